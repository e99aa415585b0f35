"""``transferkit demo``: offline demo: digits (transfer loses) and BBC News headlines (transfer wins)."""
from __future__ import annotations

import argparse

COMMAND = "demo"
HELP = "offline demo: digits (transfer loses) and BBC News headlines, 20 labels per class (transfer wins)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    p.add_argument("--runs-dir", default="runs/demo")
    p.add_argument("--fast", action="store_true", help="a smaller, quicker demo")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.runs_dir, fast=args.fast, progress=not args.quiet, num_threads=args.threads)
    return 0
