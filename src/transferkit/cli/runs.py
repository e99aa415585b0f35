"""``transferkit runs``: list the runs of a runs folder and what killed writers left behind; ``--clean`` removes
the leftovers."""
from __future__ import annotations

import argparse

COMMAND = "runs"
HELP = "list runs and leftovers of interrupted writes (--clean removes them)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    p.add_argument("--runs-dir", default="runs", help="the folder fits write into (default: runs)")
    p.add_argument("--verify", action="store_true", help="check every run's files against its SHA-256 manifest")
    p.add_argument("--clean", action="store_true",
                   help="remove stale partial folders, temp files and old copies (never a run, a folder being "
                        "written, or the only copy of a run)")
    p.add_argument("--include-resumable", action="store_true",
                   help="with --clean, also remove interrupted runs that could still be resumed")


def run(args: argparse.Namespace) -> int:
    from ..runs.inventory import clean, inventory

    entries = inventory(args.runs_dir, check=args.verify)
    if args.clean:
        for e in clean(entries, include_resumable=args.include_resumable):
            print(f"removed {e.path} ({e.state})")
        entries = inventory(args.runs_dir, check=args.verify)
    if not entries:
        print(f"{args.runs_dir}: no runs")
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.state:<10}  {e.detail}")
    return 2 if any(e.state == "damaged" for e in entries) else 0
