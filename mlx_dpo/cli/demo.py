"""`mlx-dpo frontier` and `mlx-dpo demo`: the bundled demo's own commands.

The demo tasks have checkable answers, so an adapter can be judged by a ground-truth reward
(mlx_dpo/demo/reward.py) rather than by the DPO loss alone (see behaviour.py for `eval --generate`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..demo import DEMO_PAIRS, DEMO_SETTINGS, DEMO_VALID, model_or_default
from ..errors import UsageError
from .output import command_name, log


def cmd_frontier(args) -> int:
    from ..demo.behaviour import load_prompts
    from ..demo.frontier import frontier

    model = model_or_default(args.model)
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


def demo_args(output: str) -> dict[str, list[str]]:
    """The scripted demo's commands: validate the demo pairs, train on them, evaluate the adapter."""
    model = model_or_default(None)
    lengths = ["--beta", str(DEMO_SETTINGS["beta"]), "--max-length", str(DEMO_SETTINGS["max_length"])]
    train = [f"--{k.replace('_', '-')}={v}" for k, v in DEMO_SETTINGS.items()]
    return {
        "validate": ["validate", str(DEMO_PAIRS), "--model", model, "--max-length", str(DEMO_SETTINGS["max_length"])],
        "train": ["train", "--model", model, "--data", str(DEMO_PAIRS), "--valid-data", str(DEMO_VALID),
                  "--output", output, *train],
        "eval": ["eval", "--model", model, "--adapter", output, "--data", str(DEMO_VALID), "--generate",
                 "--limit", "30", *lengths],
    }


def cmd_demo(args) -> int:
    """Validate the bundled pairs, train an adapter on them and compare its answers with the base's."""
    from .parser import build_parser
    from .train import cmd_eval, cmd_train, cmd_validate

    if not DEMO_PAIRS.exists():
        raise UsageError("this installation has no bundled demo data (sample_data)")
    output = args.output or f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}"
    commands = {"validate": cmd_validate, "train": cmd_train, "eval": cmd_eval}
    for name, argv in demo_args(output).items():
        log(f"$ {command_name()} {' '.join(argv)}")
        status = commands[name](build_parser().parse_args(argv))
        if status:
            return status
    log(f"adapter and metrics in {output}; chat with it: {command_name()} chat --adapter {output}")
    return 0


def cmd_tui(args) -> int:
    """Only reached through `python -m mlx_dpo tui`: the engine never imports the app, its launcher does."""
    raise UsageError("the app opens with the `mlx-dpo` command (`mlx-dpo tui`); `python -m mlx_dpo` is the "
                     "headless command line only")
