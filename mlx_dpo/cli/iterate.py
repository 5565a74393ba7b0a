"""`mlx-dpo iterate`: iterative DPO — sample, judge, train on best vs worst, round after round (see mlx_dpo.iterate)."""

from __future__ import annotations

import json
import sys

from ..runs import ITERATE_FLAGS
from .output import ConsoleReporter

NOT_TRAINING = ("command", "json", "events") + ITERATE_FLAGS


def iterate_config(args):
    from ..iterate.rounds import IterateConfig

    values = vars(args)
    own = {k: values[k] for k in ITERATE_FLAGS if k in values}
    train = {k: v for k, v in values.items() if k not in NOT_TRAINING}
    train["seed"] = own.get("seed", 0)  # one seed: sampling, data order and LoRA init of every round
    return IterateConfig(**own, train=train)


def cmd_iterate(args) -> int:
    from ..iterate.report import round_line
    from ..iterate.rounds import run_iterate
    from ..train.events import JsonEvents
    from .train import terminate_as_interrupt

    cfg = iterate_config(args)
    report = JsonEvents() if args.events else ConsoleReporter(show_progress=sys.stderr.isatty())
    with terminate_as_interrupt():
        reports = run_iterate(cfg, report)
    if args.events:
        report.emit("done", rounds=len([r for r in reports if r["round"] > 0]), output=str(cfg.output))
    elif args.json:
        print(json.dumps(reports))
    else:
        for rep in reports:
            print(round_line(rep))
        print(f"rounds in {cfg.output}/round_N (run dirs); the reports in {cfg.output}/rounds.jsonl")
    return 0
