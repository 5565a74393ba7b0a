"""The `mlx-dpo` command: validate, train, eval, chat, generate, export.

Flags are generated from TrainConfig's fields (one source of truth for names, types and help).
User errors print one line per problem and exit 2; a run stopped by a training condition (out of
memory, non-finite loss, a failed write such as a full disk) exits 1; Ctrl-C (SIGINT) during training
saves a checkpoint and exits 130, SIGTERM does the same and exits 143 (128 + the signal number).
No error prints a traceback. Logs go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import typing
from pathlib import Path

from ..config import TrainConfig, build_config, config_fields, load_run_config, load_yaml
from ..errors import DataError, TrainingStopped, UsageError

DATA_KEYS = ("prompt_key", "chosen_key", "rejected_key", "system_key")
LENGTHS = ("max_length", "max_prompt_length")
LOSS_ARGS = ("loss", "beta", "label_smoothing", "simpo_gamma")


def log(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # the reader went away (e.g. the app quit): keep training/saving
        pass


def _add_config_args(parser: argparse.ArgumentParser, names=None) -> None:
    """Add --flag for each TrainConfig field (all, or `names`); absent flags stay absent (SUPPRESS)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in config_fields():
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        default = f" (default: {f.default})" if f.default not in (None, False) else ""
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": meta["help"] + default}
        hint = hints[f.name]
        base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = base[0]
        if kind is bool:  # on-by-default switches get a --no-... form
            parser.add_argument(flag, action=argparse.BooleanOptionalAction if f.default else "store_true", **kw)
            continue
        if kind is list or getattr(kind, "__origin__", None) is list:
            kw["nargs"] = "+"
        else:
            kw["type"] = kind if kind in (int, float) else str
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        parser.add_argument(flag, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-dpo", description="Direct Preference Optimization of LoRA adapters with MLX. "
                                "Run without arguments (or `mlx-dpo tui`) to open the terminal app.")
    sub = p.add_subparsers(dest="command")

    v = sub.add_parser("validate", help="check a pairs file; print counts and token-length statistics")
    v.add_argument("file", help="pairs file (.jsonl or .json)")
    v.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _add_config_args(v, ("model", "trust_remote_code") + DATA_KEYS + LENGTHS)

    t = sub.add_parser("train", help="train a DPO LoRA adapter")
    t.add_argument("--config", help="YAML file with the same keys as the flags (flags win)")
    _add_config_args(t)

    e = sub.add_parser("eval", help="DPO loss and reward metrics of an adapter on a pairs file")
    e.add_argument("--adapter", help="run dir or adapter folder (omit to evaluate the base model)")
    e.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    g = e.add_argument_group("behaviour (--generate): answers scored by the demo tasks' ground-truth reward")
    g.add_argument("--generate", action="store_true",
                   help="also generate answers for the file's prompts with base and base + adapter and score them")
    g.add_argument("--limit", type=int, help="at most this many prompts")
    g.add_argument("--temperature", type=float, default=0.0, help="decoding temperature (default 0: greedy)")
    g.add_argument("--max-tokens", type=int, default=64, help="new tokens per answer (default 64)")
    g.add_argument("--kl-samples", type=int, default=1, help="answers sampled per prompt for the KL estimate")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")
    g.add_argument("--show", type=int, default=3, help="example answers to print")
    _add_config_args(e, ("model", "data", "quantize", "trust_remote_code", "batch_size", "pad_multiple",
                         "cache_dir", "init_adapter", "cpu_dequant_matmul") + DATA_KEYS + LENGTHS + LOSS_ARGS)

    f = sub.add_parser("frontier", help="train one adapter per beta and plot ground-truth reward against KL")
    f.add_argument("--model", help="base model (default: the bundled demo model)")
    f.add_argument("--data", required=True, help="training pairs")
    f.add_argument("--valid-data", required=True, help="held-out pairs whose prompts are answered and scored")
    f.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.1, 0.3, 1.0])
    f.add_argument("--output", required=True, help="folder for the runs and the plot")
    f.add_argument("--iters", type=int, default=24)
    f.add_argument("--learning-rate", type=float, default=5e-4)
    f.add_argument("--limit", type=int, default=30, help="held-out prompts to score")
    f.add_argument("--json", action="store_true")

    for name, help_ in (("chat", "chat with base + adapter in the terminal (/reset, /quit)"),
                        ("generate", "print one completion for --prompt")):
        c = sub.add_parser(name, help=help_)
        _add_model_args(c)
        _add_sampling_args(c)
        c.add_argument("--system", help="system message")
        c.add_argument("--compare", action="store_true",
                       help="answer with the base model and with base + adapter, one after the other")
        if name == "generate":
            c.add_argument("--prompt", required=True, help="the user message")

    x = sub.add_parser("export", help="export an adapter: fused HF model, PEFT adapter or mlx-lm folder; verified")
    _add_model_args(x, adapter_required=True)
    x.add_argument("--output", required=True, help="new folder to write (must not exist)")
    x.add_argument("--format", choices=("hf", "peft", "mlx"), default="hf", help="default: hf (fused, dequantized)")
    x.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="tensor dtype (default: the base's)")
    x.add_argument("--quantize", type=int, choices=(4, 8), help="re-quantize the fused hf model for MLX use")
    x.add_argument("--no-verify", dest="verify", action="store_false", help="skip the reload-and-compare check")
    x.add_argument("--push-to-hub", metavar="REPO", help="upload OUT to this Hugging Face repo")
    return p


def _add_model_args(p, adapter_required=False):
    p.add_argument("--model", help="local HF-format folder or hub id of the base model (default: the bundled demo model)")
    p.add_argument("--adapter", required=adapter_required, help="run dir or adapter folder")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model folder to run its own code")
    if not adapter_required:
        p.add_argument("--quantize", type=int, choices=(4, 8), help="quantize the base on load")


def _add_sampling_args(p):
    from ..model.generate import Sampling

    for f in dataclasses.fields(Sampling):
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=float if f.type == "float" else int,
                       default=f.default, help=f.metadata["help"] + f" (default: {f.default})")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        from . import use as cli_use
        commands = {"validate": cmd_validate, "train": cmd_train, "eval": cmd_eval, "chat": cli_use.cmd_chat,
                    "frontier": cli_use.cmd_frontier,
                    "generate": cli_use.cmd_generate, "export": cli_use.cmd_export}
        return commands[args.command](args)
    except DataError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        log(f"error: {len(e.errors)} problem(s) in the data; nothing was written")
        return 2
    except UsageError as e:
        log(f"error: {e}")
        return 2
    except TrainingStopped as e:
        if not e.reported:
            log(f"error: {e}")
        return 1
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        log("interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}")
        return 128 + int(signum)
    except OSError as e:  # a file that cannot be written or read at a point the engine did not foresee
        from ..fileio import disk_full

        why = "the disk is full" if disk_full(e) else (e.strerror or str(e))
        log(f"error: {e.filename + ': ' if e.filename else ''}{why}")
        return 1


def _flags(args, exclude=("command", "config", "json", "adapter", "file")) -> dict:
    return {k: v for k, v in vars(args).items() if k not in exclude}


def cmd_validate(args) -> int:
    from ..data.pairs import DataKeys
    from ..data.prepare import prepare

    cfg = build_config({}, _flags(args))
    tokenizer = None
    if cfg.model:
        from ..model.load import load_base
        tokenizer = load_base(cfg.model, None, cfg.trust_remote_code, log=log).tokenizer
    prepared = prepare(args.file, DataKeys(cfg.prompt_key, cfg.chosen_key, cfg.rejected_key, cfg.system_key),
                       tokenizer, cfg.max_length, cfg.prompt_limit)
    for line in prepared.errors:
        print(line, file=sys.stderr)
    report = prepared.report()
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(report, cfg, tokenizer is not None)
        if prepared.render is not None:
            for w in prepared.render.warnings():
                print(f"warning: {w}")
    return 2 if prepared.errors else 0


def _print_report(r: dict, cfg: TrainConfig, tokenized: bool) -> None:
    fmts = ", ".join(f"{k} {v}" for k, v in sorted(r["formats"].items())) or "none"
    print(f"{r['file']}: {r['rows']} rows, {r['valid_pairs']} valid pairs ({fmts}), {r['errors']} error(s)")
    if not tokenized:
        print("token statistics: pass --model to tokenize with its chat template")
        return
    print(f"{'tokens':<10}{'min':>7}{'mean':>9}{'p50':>7}{'p95':>7}{'max':>7}")
    for k, s in r.get("tokens", {}).items():
        print(f"{k:<10}{s['min']:>7}{s['mean']:>9.1f}{s['p50']:>7}{s['p95']:>7}{s['max']:>7}")
    print(f"limits max_length={cfg.max_length}, max_prompt_length={cfg.prompt_limit}: "
          f"{r.get('truncated', 0)} pair(s) truncated, {r.get('dropped', 0)} dropped; "
          f"{r.get('trainable_pairs', 0)} pairs would train")


def cmd_train(args) -> int:
    import yaml

    from ..train.distributed import init_world
    from ..train.trainer import Trainer

    yaml_values = load_yaml(args.config) if getattr(args, "config", None) else {}
    sources = dict.fromkeys(yaml_values, args.config)
    flags = _flags(args)
    if flags.get("resume") and (flags.get("output") or yaml_values.get("output")):
        # Resume continues the saved run's settings; flags given now (e.g. a larger --iters) still win.
        run_dir = Path(flags.get("output") or yaml_values["output"])
        saved = load_run_config(run_dir)
        sources = {**dict.fromkeys(saved, str(run_dir / "config.yaml")), **sources}
        yaml_values = {**saved, **yaml_values}
    cfg = build_config(yaml_values, flags, sources)
    cfg.model = cfg.model or _default_model()
    for key in ("model", "data", "output"):
        if not getattr(cfg, key):
            raise UsageError(f"--{key} is required")
    world = init_world(cfg.validate().dist_timeout)
    if world.distributed:  # every rank trains rank 0's resolved settings
        cfg = build_config(yaml.safe_load(world.broadcast_text(yaml.safe_dump(cfg.to_dict()))), {})
    # Until the training loop installs its checkpoint-then-stop handler, SIGTERM stops like Ctrl-C.
    old = _terminate_as_interrupt()
    try:
        trainer = Trainer(cfg, log=log, show_progress=sys.stderr.isatty(), world=world).setup()
    finally:
        _restore_signal(old)
    last = trainer.train()
    if last and world.is_main:
        log(f"done: step {last['step']}, loss {last['loss']:.4f}, accuracy {last['rewards/accuracies']:.3f}; "
            f"adapter in {cfg.output}")
    return 0


def _terminate_as_interrupt():
    from ..train.trainer import Interrupted

    def handler(signum, frame):
        raise Interrupted(signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_signal(old) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)


def _default_model() -> str | None:
    from ..model.load import default_model
    return default_model()


def cmd_eval(args) -> int:
    from ..train.evaluation import run_eval

    flags = _flags(args)
    if args.adapter and "init_adapter" not in flags:
        # Evaluate against the same reference the run trained with (base + its init adapter, if any).
        saved = load_run_config(Path(args.adapter))
        if saved.get("init_adapter"):
            flags["init_adapter"] = saved["init_adapter"]
    cfg = build_config({}, flags)
    cfg.model = cfg.model or _default_model()
    for key in ("model", "data"):
        if not getattr(cfg, key):
            raise UsageError(f"--{key} is required")
    metrics = run_eval(cfg, args.adapter, log=log)
    behaviour = None
    if args.generate:
        from .use import run_behaviour
        behaviour = run_behaviour(cfg, args)
    if args.json:
        print(json.dumps(metrics if behaviour is None else {**metrics, "behaviour": behaviour.as_dict(rows=True)}))
        return 0
    for k, v in metrics.items():
        print(f"{k:<20} {v:.4f}" if isinstance(v, float) else f"{k:<20} {v}")
    if behaviour is not None:
        from .use import print_behaviour
        print_behaviour(behaviour, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
