"""`mlx-dpo chat`, `generate` and `export`: using a trained adapter."""

from __future__ import annotations

import sys

from .commands import log
from ..errors import UsageError
from ..model.generate import ChatSession, Sampling, load_for_generation, stream_answer


def _sampling(args) -> Sampling:
    s = Sampling(args.temperature, args.top_p, int(args.max_tokens), args.seed)
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_tokens < 1:
        raise UsageError("sampling: need --temperature >= 0, 0 < --top-p <= 1, --max-tokens >= 1")
    return s


def _load(args):
    from ..model.load import default_model

    args.model = args.model or default_model()
    if not args.model:
        raise UsageError("--model is required (no bundled demo model in this checkout)")
    if args.compare and not args.adapter:
        raise UsageError("--compare needs --adapter (it answers with and without it)")
    return load_for_generation(args.model, args.adapter, args.quantize, args.trust_remote_code, log=log)


def _variants(args, switch):
    """(label, adapter on?) for each answer to give."""
    if args.compare:
        return [("base", False), ("tuned", True)]
    return [(None, switch is not None)]


def _stream(model, tokenizer, messages, sampling, out) -> str:
    pieces = []
    for piece in stream_answer(model, tokenizer, messages, sampling):
        pieces.append(piece)
        out.write(piece)
        out.flush()
    out.write("\n")
    return "".join(pieces)


def cmd_generate(args) -> int:
    sampling = _sampling(args)  # check the flags before loading anything
    model, tokenizer, switch = _load(args)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.prompt}]
    for label, enabled in _variants(args, switch):
        if switch:
            switch.set(enabled)
        if label:
            print(f"=== {label} {'(base + adapter)' if enabled else '(adapter off)'} ===", flush=True)
        _stream(model, tokenizer, messages, sampling, sys.stdout)
    return 0


def cmd_chat(args) -> int:
    sampling = _sampling(args)  # check the flags before loading anything
    model, tokenizer, switch = _load(args)
    sessions = {label: ChatSession(model, tokenizer, sampling, args.system) for label, _ in _variants(args, switch)}
    interactive = sys.stdin.isatty()
    if interactive:
        log("chat: type a message; /reset clears the conversation, /quit (or Ctrl-D) leaves")
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/reset":
            for s in sessions.values():
                s.reset()
            print("(conversation cleared)", flush=True)
            continue
        for label, enabled in _variants(args, switch):
            if switch:
                switch.set(enabled)
            session = sessions[label]
            print(f"{label or 'assistant'}> ", end="", flush=True)
            for piece in session.send(text):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
    return 0


def cmd_export(args) -> int:
    from ..export.formats import ExportConfig, run_export

    from ..model.load import default_model

    args.model = args.model or default_model()
    if not args.model:
        raise UsageError("--model is required (no bundled demo model in this checkout)")
    cfg = ExportConfig(model=args.model, adapter=args.adapter, output=args.output, format=args.format,
                       dtype=args.dtype, quantize=args.quantize, verify=args.verify,
                       push_to_hub=args.push_to_hub, trust_remote_code=args.trust_remote_code)
    result = run_export(cfg, log=log)
    print(f"exported {args.format} to {result.output} ({result.verdict()})")
    return 0


def run_behaviour(cfg, args):
    """`eval --generate`: base vs base + adapter answers on the file's prompts, scored by the reward."""
    from ..demo.behaviour import behaviour_eval, load_prompts

    if not args.adapter:
        raise UsageError("--generate compares base and tuned answers: pass --adapter")
    model, tokenizer, switch = load_for_generation(cfg.model, args.adapter, cfg.quantize, cfg.trust_remote_code,
                                                   log=log)
    prompts = load_prompts(cfg.data, args.limit)
    sampling = Sampling(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
    return behaviour_eval(model, tokenizer, switch, prompts, sampling=sampling, kl_samples=args.kl_samples,
                          seed=args.seed, log=log)


def print_behaviour(res, show: int) -> None:
    print(f"behaviour ({res.n} prompts, {res.decoding}; {res.skipped} skipped by the reward)")
    print(f"  mean reward  base {res.reward_base:.3f}  tuned {res.reward_tuned:.3f}  ({res.reward_gain:+.3f})")
    print(f"  win rate     {res.win_rate:.2f} (tuned vs base, ties count half)")
    if res.kl is not None:
        print(f"  KL estimate  {res.kl:.3f} nats per answer (tuned || base)")
    for row in res.rows[:show]:
        print(f"  - {row.get('prompt', '')!s:.70}\n      base  [{row.get('reward_base', 0):.2f}] "
              f"{row.get('base', '')!s:.70}\n      tuned [{row.get('reward_tuned', 0):.2f}] {row.get('tuned', '')!s:.70}")


def cmd_frontier(args) -> int:
    import json
    from pathlib import Path

    from ..demo.behaviour import frontier, load_prompts
    from ..model.load import default_model

    model = args.model or default_model()
    if not model:
        raise UsageError("--model is required (no bundled demo model in this checkout)")
    out = Path(args.output)
    prompts = load_prompts(args.valid_data, args.limit)
    points = frontier(model, args.data, prompts, args.betas, out,
                      train_overrides={"iters": args.iters, "learning_rate": args.learning_rate},
                      plot=out / "frontier.png", log=log)
    if args.json:
        print(json.dumps([{"beta": b, "kl": kl, "reward": r} for b, kl, r in points]))
    else:
        print(f"{'beta':>8} {'KL':>8} {'reward':>8}")
        for b, kl, r in points:
            print(f"{('base' if b == float('inf') else f'{b:g}'):>8} {kl:>8.3f} {r:>8.3f}")
    return 0
