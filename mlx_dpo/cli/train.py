"""`mlx-dpo validate`, `train`, `estimate` and `eval`: the data, a training run, the memory it needs, an adapter's
DPO metrics."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from ..config import TrainConfig, build_config, eval_flags_for_run, load_run_config, load_yaml
from ..demo import model_or_default
from ..errors import UsageError
from .output import ConsoleReporter, command_name, log


def config_flags(args) -> dict:
    """The parsed flags that are TrainConfig values (absent flags are absent: argparse.SUPPRESS)."""
    return {k: v for k, v in vars(args).items()
            if k not in ("command", "config", "json", "adapter", "file", "show", "memory")}


def cmd_validate(args) -> int:
    from ..data.prepare import prepare
    from ..data.sources import DataSpec

    cfg = build_config({}, config_flags(args))
    show = getattr(args, "show", 0) or 0
    if show < 0:
        raise UsageError(f"--show takes a number of pairs (0 or more), got {show}")
    if show and not cfg.model:
        raise UsageError("--show needs --model: the pairs are shown as that model's chat template renders them")
    tokenizer = None
    if cfg.model:
        from ..model.load import load_base
        from ..data.template import set_render_options
        tokenizer = load_base(cfg.model, None, cfg.trust_remote_code, log=log).tokenizer
        set_render_options(tokenizer, date=cfg.template_date, template_kwargs=cfg.template_kwargs)
    spec = DataSpec(args.file, cfg.split, cfg.data_config, cfg.data_revision)
    reporter = ConsoleReporter(show_progress=sys.stderr.isatty() and not args.json)

    def progress(done, total):  # tokenizing a large file takes minutes: a bar, or a line now and then
        reporter.task("tokenize", done, total, f"tokenizing {Path(spec.path).name}")

    prepared = prepare(spec, cfg.data_keys, tokenizer, cfg.max_length, cfg.prompt_limit, progress,
                       keep_messages=show, **cfg.data_options)
    for line in prepared.errors + prepared.load.hints:  # the hint (e.g. the flags to map columns) last
        print(line, file=sys.stderr)
    report = prepared.report()
    shown = []
    if show and tokenizer is not None:
        from ..data.pairs import PreferencePair
        from ..data.preview import rendered_pair

        shown = [rendered_pair(tokenizer, p) for p in prepared.load.pairs[:show] if isinstance(p, PreferencePair)]
        report["shown"] = shown
    if args.json:
        print(json.dumps(report))
    else:
        for line in prepared.summary_lines():
            print(line)
        print_report(report, cfg, tokenizer is not None)
        if prepared.render is not None:
            for w in prepared.render.warnings():
                print(f"warning: {w}")
        from ..data.preview import rendered_lines

        for n, ex in enumerate(shown, start=1):
            print("\n".join(rendered_lines(ex, n, len(shown))))
    if prepared.errors and cfg.skip_invalid and not prepared.fatal and report["valid_pairs"] > 0:
        return 0  # training with --skip-invalid would go ahead on the valid pairs
    return 2 if prepared.errors else 0


def print_report(r: dict, cfg: TrainConfig, tokenized: bool) -> None:
    from ..data.preview import token_table

    fmts = ", ".join(f"{k} {v}" for k, v in sorted(r["formats"].items())) or "none"
    print(f"{r['file']}: {r['rows']} rows, {r['valid_pairs']} valid pairs ({fmts}), {r['errors']} error(s)")
    if r["errors"] and r["valid_pairs"]:
        print(f"{r['errors']} invalid row(s) " + ("left out (--skip-invalid)" if cfg.skip_invalid else
                                                 "refuse the data; pass --skip-invalid to train on the valid pairs"))
    if not tokenized:
        print("token statistics: pass --model to tokenize with its chat template (validate checks the rows' "
              "structure only; it does not assume the demo model)")
        return
    print("\n".join(token_table(r)))
    refused = r["errors"] and not cfg.skip_invalid
    print(f"limits max_length={cfg.max_length}, max_prompt_length={cfg.prompt_limit}: "
          f"{r.get('truncated', 0)} pair(s) truncated, {r.get('dropped', 0)} dropped; "
          f"{r.get('trainable_pairs', 0)} pairs would train" + (" with --skip-invalid" if refused else ""))


def train_config(args, required=("data", "output")) -> TrainConfig:
    """Defaults < the run's saved config (with --resume) < --config YAML < flags."""
    yaml_values = load_yaml(args.config) if getattr(args, "config", None) else {}
    sources = dict.fromkeys(yaml_values, args.config)
    flags = config_flags(args)
    if flags.get("resume") and (flags.get("output") or yaml_values.get("output")):
        # Resume continues the saved run's settings; flags given now may change only what
        # config.RESUME_MAY_CHANGE allows (e.g. a larger --iters): the trainer refuses the rest.
        run_dir = Path(flags.get("output") or yaml_values["output"])
        check_resumable(run_dir)
        saved = load_run_config(run_dir)
        sources = {**dict.fromkeys(saved, str(run_dir / "config.yaml")), **sources}
        yaml_values = {**saved, **yaml_values}
    cfg = build_config(yaml_values, flags, sources)
    cfg.model = model_or_default(cfg.model)
    for key in required:
        if not getattr(cfg, key):
            raise UsageError(f"--{key} is required")
    return cfg.validate()


def cmd_estimate(args) -> int:
    """`mlx-dpo estimate [train's flags] [--memory 16GB] [--json]`: the memory the run would need, whether it
    fits, and settings that fit when it does not (train/fit.py). A question: exit 0 either way."""
    from ..train.fit import budget, check, data_lengths

    cfg = train_config(args, required=())
    available, source = budget(args.memory)  # a bad --memory is refused before the data is read
    data = None
    if cfg.data:
        reporter = ConsoleReporter(show_progress=sys.stderr.isatty() and not args.json)

        def progress(done, total):
            reporter.task("tokenize", done, total, f"tokenizing {Path(cfg.data).name}")

        data = data_lengths(cfg, progress)
    fit = check(cfg, data, available=available, available_source=source)
    if args.json:
        print(json.dumps(fit.as_dict()))
    else:
        print("\n".join(fit.lines()))
    return 0


def check_resumable(run_dir: Path) -> None:
    """Refuse --resume on a folder that holds no run to continue, before asking for --data and the rest."""
    from ..runs import read_run

    if not run_dir.exists():
        raise UsageError(f"{run_dir}: nothing to resume: no such run dir (--resume continues the run in "
                         "--output; to start a run there, leave out --resume)")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: --output exists and is not a folder")
    if not read_run(run_dir).checkpoints:
        raise UsageError(f"{run_dir}: nothing to resume (no complete checkpoint in {run_dir / 'checkpoints'})")


def cmd_train(args) -> int:
    import yaml

    from ..train.distributed import init_world
    from ..train.events import JsonEvents
    from ..train.resume import NothingToDo
    from ..train.trainer import Trainer

    cfg = train_config(args)
    world = init_world(cfg.dist_timeout)
    if world.distributed:  # every rank trains rank 0's resolved settings
        cfg = build_config(yaml.safe_load(world.broadcast_text(yaml.safe_dump(cfg.to_dict()))), {})
    report = JsonEvents() if args.events else ConsoleReporter(show_progress=sys.stderr.isatty())
    # Until the training loop installs its checkpoint-then-stop handler, SIGTERM stops like Ctrl-C.
    with terminate_as_interrupt():
        try:
            trainer = Trainer(cfg, report, world=world).setup()
        except NothingToDo as e:
            if world.is_main:
                report.log(str(e))
            return 0
    last = trainer.train()
    if last and world.is_main:
        report.log(f"done: step {last['step']}, loss {last['loss']:.4f}, accuracy "
                   f"{last['rewards/accuracies']:.3f}; adapter in {cfg.output}")
        if trainer.health.warned:  # said once more at the end: the loss above looks fine, the answers may not
            report.log(f"health warnings during this run: {', '.join(sorted(trainer.health.warned))}; check its "
                       f"answers before using it (RUN_DIR/samples.jsonl, or mlx-dpo compare --adapter {cfg.output} "
                       "--judge ...)")
        if not args.events:  # the loop goes on: chat with the adapter, pick answers, train on the picks
            report.log(f"next: {command_name()} chat --adapter {cfg.output} --ab  (your picks go to a prefs file; "
                       f"then {command_name()} train --data THAT_FILE --init-adapter {cfg.output} --output NEW_RUN)")
        report.done(last["step"], last["loss"], last["rewards/accuracies"], cfg.output)
    return 0


class terminate_as_interrupt:
    """While active, SIGTERM raises Interrupted (as Ctrl-C raises KeyboardInterrupt): a clean exit 143."""

    def __enter__(self):
        from ..train.control import Interrupted

        def handler(signum, frame):
            raise Interrupted(signum)

        try:
            self.old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def eval_config(args) -> TrainConfig:
    flags = config_flags(args)
    if args.adapter:  # the run's own base, loss settings, lengths and reference (flags still win)
        flags = eval_flags_for_run(Path(args.adapter), flags)
    cfg = build_config({}, flags)
    cfg.model = model_or_default(cfg.model)
    if not cfg.data:
        raise UsageError("--data is required")
    return cfg


def cmd_eval(args) -> int:
    from ..train.session import run_eval

    cfg = eval_config(args)
    metrics = run_eval(cfg, args.adapter, ConsoleReporter(show_progress=sys.stderr.isatty() and not args.json))
    behaviour = None
    if args.generate:
        from .behaviour import print_behaviour, run_behaviour
        behaviour = run_behaviour(cfg, args)
    if args.json:
        print(json.dumps(metrics if behaviour is None else {**metrics, "behaviour": behaviour.as_dict(rows=True)}))
        return 0
    for k, v in metrics.items():
        print(f"{k:<20} {v:.4f}" if isinstance(v, float) else f"{k:<20} {v}")
    if behaviour is not None:
        print_behaviour(behaviour, args.show)
    return 0
