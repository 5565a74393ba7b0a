"""The `mlx-dpo` command: parse, dispatch to one module per command family, map errors to exit codes.

    validate, train, eval   train.py     (the data, a training run, an adapter's DPO metrics,
    estimate                             the memory a run needs and settings that fit)
    chat, generate          use.py       (answers from base + adapter)
    export                  export.py    (fused HF model, PEFT adapter, mlx-lm folder; verified)
    iterate                 iterate.py   (iterative DPO: sample, judge, train, round after round)
    compare                 compare.py   (an adapter's answers against the base's or another run's, judged)
    frontier, demo          demo.py      (the bundled demo: reward-vs-KL sweep, the scripted demo)

Exit codes: bad input (flags, config, data, paths) 2 with one line per problem and nothing written;
a run stopped by a training condition (out of memory, non-finite loss, a failed write such as a full
disk) 1; Ctrl-C (SIGINT) during training saves a checkpoint and exits 130, SIGTERM the same with 143
(128 + the signal number). No error prints a traceback. Logs go to stderr, results to stdout.
"""

from __future__ import annotations

import signal
import sys
from importlib import import_module

from ..errors import DataError, TrainingStopped, UsageError
from .output import log
from .parser import build_parser

# command -> (module of this package, function)
COMMANDS = {"validate": ("train", "cmd_validate"), "train": ("train", "cmd_train"), "eval": ("train", "cmd_eval"),
            "estimate": ("train", "cmd_estimate"),
            "chat": ("use", "cmd_chat"), "generate": ("use", "cmd_generate"), "export": ("export", "cmd_export"),
            "iterate": ("iterate", "cmd_iterate"),
            "compare": ("compare", "cmd_compare"), "frontier": ("demo", "cmd_frontier"), "demo": ("demo", "cmd_demo"), "tui": ("demo", "cmd_tui")}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module, name = COMMANDS[args.command]
    if getattr(args, "events", False):
        from ..train.events import announce_errors

        announce_errors()
    try:
        return getattr(import_module(f".{module}", __name__), name)(args)
    except DataError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return _fail(args, f"{len(e.errors)} problem(s) in the data; nothing was written", 2, str(e),
                     problems=[p.as_dict() for p in e.problems], skippable=e.skippable)
    except UsageError as e:
        return _fail(args, str(e), 2, key=e.key, details=e.details)
    except TrainingStopped as e:
        return _fail(args, str(e), 1, printed=e.reported)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        log("interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}")
        _event(args).stopped(signum, _latest_checkpoint(args))
        return 128 + int(signum)
    except OSError as e:  # a file that cannot be written or read at a point the engine did not foresee
        from ..fileio import write_failure

        return _fail(args, f"{e.filename + ': ' if e.filename else ''}{write_failure(e)}", 1)


def _fail(args, text: str, status: int, event_text: str | None = None, printed: bool = False, key=None,
          problems=None, skippable=False, details=None) -> int:
    if not printed:
        log(f"error: {text}")
    _event(args).error(event_text or text, status, key=key, problems=problems, skippable=skippable, details=details)
    return status


def _event(args):
    """The structured-event channel of `train --events` (a silent Reporter otherwise)."""
    from ..train.events import JsonEvents, Reporter

    return JsonEvents() if getattr(args, "events", False) else Reporter()


def _latest_checkpoint(args) -> str | None:
    if not getattr(args, "output", None):
        return None
    from pathlib import Path

    from ..train.checkpoint import latest

    folder = Path(args.output)
    if args.command == "iterate":  # the round in progress (the newest one): its checkpoint, if it has one
        rounds = [d for d in folder.glob("round_*") if d.name[6:].isdigit()]
        if not rounds:
            return None
        folder = max(rounds, key=lambda d: int(d.name[6:]))
    path = latest(folder)
    return str(path) if path else None
