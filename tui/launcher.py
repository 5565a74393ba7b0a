"""The `mlx-dpo` console script: no arguments (or `tui`) opens the app; anything else is the headless CLI.

Living in tui/ keeps the engine (mlx_dpo/) free of any import of Textual or the UI.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "tui":
        from mlx_dpo import main as cli_main
        return cli_main(argv)
    # No abbreviations, as the engine's commands: `--dat` is refused, not taken for --data.
    p = argparse.ArgumentParser(prog="mlx-dpo tui", description="Open the mlx-dpo terminal app.", allow_abbrev=False)
    p.add_argument("--model", help="base model: local folder or hub id (default: the bundled demo model)")
    p.add_argument("--data", help="pairs file to open on the Data tab")
    p.add_argument("--valid-data", help="held-out pairs file")
    p.add_argument("--runs", default="runs", help="folder of run dirs (default: ./runs)")
    p.add_argument("--demo", action="store_true",
                   help="open on the bundled demo: its model, training pairs and held-out pairs")
    args = p.parse_args(argv[1:])
    if args.demo:
        from mlx_dpo import DEMO_MODEL, DEMO_PAIRS, DEMO_VALID
        args.model = args.model or str(DEMO_MODEL)
        args.data = args.data or str(DEMO_PAIRS)
        args.valid_data = args.valid_data or str(DEMO_VALID)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("mlx-dpo: the app needs a terminal; for scripts use the subcommands (mlx-dpo --help)",
              file=sys.stderr)
        return 2
    from .app import run_app
    return run_app(args.model, args.data, args.valid_data, args.runs, demo=args.demo)


if __name__ == "__main__":
    sys.exit(main())
