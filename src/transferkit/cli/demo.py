"""``transferkit demo``: offline demo: digits, packaged EfficientNet-Lite0 vs scratch CNN."""
from __future__ import annotations

import argparse

COMMAND = "demo"
HELP = "offline demo: digits, packaged EfficientNet-Lite0 vs scratch CNN"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    p.add_argument("--runs-dir", default="runs/demo")
    p.add_argument("--fast", action="store_true", help="a smaller, quicker demo")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.runs_dir, fast=args.fast, progress=not args.quiet)
    return 0
