"""``transferkit runs``: the runs of a runs folder. ``runs list`` shows runs and what killed writers left behind
(partial folders, old copies, temp files); ``runs clean`` removes those leftovers."""
from __future__ import annotations

import argparse

COMMAND = "runs"
HELP = "list the runs of a runs folder (runs list) and clean leftovers of interrupted writes (runs clean)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    verbs = p.add_subparsers(dest="runs_command", required=True)
    ls = verbs.add_parser("list", help="runs and leftovers; exit code 2 when a run is damaged")
    ls.add_argument("--verify", action="store_true", help="check every run's files against its SHA-256 manifest "
                                                          "(default: sizes only)")
    cl = verbs.add_parser("clean", help="remove stale partial folders, temp files and old copies (never a run, a "
                                        "folder being written, or the only copy of a run)")
    cl.add_argument("--include-resumable", action="store_true",
                    help="also remove interrupted runs that could still be resumed")
    for sp in (ls, cl):
        sp.add_argument("--runs-dir", default="runs", help="the folder fits write into (default: runs)")


def _show(entries: list) -> None:
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.state:<10}  {e.detail}")


def run(args: argparse.Namespace) -> int:
    from ..runs.inventory import clean, inventory

    if args.runs_command == "clean":
        removed = clean(inventory(args.runs_dir), include_resumable=args.include_resumable)
        for e in removed:
            print(f"removed {e.path} ({e.state})")
        print(f"{len(removed)} leftover(s) removed from {args.runs_dir}")
        return 0
    entries = inventory(args.runs_dir, check=args.verify)
    if not entries:
        print(f"{args.runs_dir}: no runs")
    _show(entries)
    return 2 if any(e.state == "damaged" for e in entries) else 0
