"""``transferkit predict``: predict with a saved run."""
from __future__ import annotations

import argparse

COMMAND = "predict"
HELP = "predict with a saved run"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", help="image files/folders, a .txt file (one text per line) or a table")
    p.add_argument("-o", "--output", help="output .csv or .json (default: CSV on stdout)")
    p.add_argument("--top-k", type=int, default=3)


def run(args: argparse.Namespace) -> int:
    from ..runs import load_run
    from ..runs.predict import inputs_to_dataset, predict_dataset
    from ..runs.writers import write_rows

    run = load_run(args.run)
    rows = predict_dataset(run, inputs_to_dataset(run, args.inputs), top_k=args.top_k)
    write_rows(rows, args.output)
    return 0
