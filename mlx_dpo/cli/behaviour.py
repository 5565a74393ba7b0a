"""`mlx-dpo eval --generate`: base vs base + adapter answers on the file's prompts, scored by the reward."""

from __future__ import annotations

from ..errors import UsageError
from .output import log


def run_behaviour(cfg, args):
    """`eval --generate`: base vs base + adapter answers on the file's prompts, scored by the reward."""
    from ..demo.behaviour import behaviour_eval, load_prompts
    from ..model.generate import Sampling, load_for_generation

    if not args.adapter:
        raise UsageError("--generate compares base and tuned answers: pass --adapter")
    model, tokenizer, switch = load_for_generation(cfg.model, args.adapter, cfg.quantize, cfg.trust_remote_code,
                                                   log=log, template_kwargs=cfg.template_kwargs)
    prompts = load_prompts(cfg.data, args.limit)
    sampling = Sampling(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
    return behaviour_eval(model, tokenizer, switch, prompts, sampling=sampling, kl_samples=args.kl_samples,
                          seed=args.seed, log=log)


def print_behaviour(res, show: int) -> None:
    """The report: with a reward breakdown, a table of correctness and each style component, base vs tuned."""
    print(f"behaviour ({res.n} prompts, {res.decoding}; {res.skipped} skipped by the reward)")
    parts = res.components
    if parts is None:
        print(f"  mean reward  base {res.reward_base:.3f}  tuned {res.reward_tuned:.3f}  ({res.reward_gain:+.3f})")
    else:
        print(f"  {'':<13} {'base':>6} {'tuned':>6} {'change':>7}")
        for name, (base, tuned) in parts.items():
            print(f"  {name:<13} {base:>6.3f} {tuned:>6.3f} {tuned - base:>+7.3f}")
        print(f"  {'mean reward':<13} {res.reward_base:>6.3f} {res.reward_tuned:>6.3f} {res.reward_gain:>+7.3f}")
        print("  (fractions of answers; correct = right value for the question asked; concise = mean 0-1 score)")
    print(f"  win rate     {res.win_rate:.2f} (tuned vs base, ties count half)")
    if res.kl is not None:
        print(f"  KL estimate  {res.kl:.3f} nats per answer (tuned || base)")
    for row in res.rows[:show]:
        print(f"  - {row.get('prompt', '')!s:.70}\n      base  [{row.get('reward_base', 0):.2f}] "
              f"{row.get('base', '')!s:.70}\n      tuned [{row.get('reward_tuned', 0):.2f}] {row.get('tuned', '')!s:.70}")
