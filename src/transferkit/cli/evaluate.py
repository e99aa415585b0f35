"""``transferkit evaluate``: evaluate a saved run on labelled data."""
from __future__ import annotations

import argparse

COMMAND = "evaluate"
HELP = "evaluate a saved run on labelled data"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--out", help="directory for metrics and plots (default: RUN/eval-DATA)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..runs import load_run
    from ..runs.evaluate import evaluate_run

    run = load_run(args.run)
    out = Path(args.out) if args.out else run.path / f"eval-{Path(args.data).name.split('.')[0]}"
    metrics, report = evaluate_run(run, args.data, out)
    keys = ("mae", "rmse", "r2") if "r2" in metrics else ("accuracy", "macro_f1", "weighted_f1", "ece")
    print("  ".join(f"{k}={metrics[k]:.4f}" for k in keys))
    print(f"report: {report}")
    return 0
