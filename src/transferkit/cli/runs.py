"""``transferkit runs``: the run store over a runs folder (no server).

``runs list`` (filter, sort; text, Markdown or JSON; leftovers of killed writers), ``runs show RUN``,
``runs compare A B ...``, ``runs rm RUN ...`` and ``runs clean`` (remove leftovers)."""
from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = "runs"
HELP = "the run store: list / show / compare / rm runs, clean leftovers of interrupted writes"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    verbs = p.add_subparsers(dest="runs_command", required=True)
    ls = verbs.add_parser("list", help="the runs, filtered and sorted; exit code 2 when a run is damaged")
    ls.add_argument("--filter", help="conditions that must all hold, e.g. 'strategy=lp-ft, macro_f1>0.9' "
                                     "(ops = != > < >= <= and ~ for 'contains'; keys: metrics, settings, kind, ...)")
    ls.add_argument("--sort", help="a metric or setting to sort by (descending; --asc for ascending)")
    ls.add_argument("--asc", action="store_true")
    ls.add_argument("--metrics", default="macro_f1,accuracy", help="metric columns (comma-separated)")
    fmt = ls.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--md", action="store_true")
    ls.add_argument("--verify", action="store_true", help="check every run's files against its SHA-256 manifest "
                                                          "(default: their sizes)")
    sh = verbs.add_parser("show", help="one run: settings, metrics, lineage, files (verified)")
    sh.add_argument("run", help="a run name in --runs-dir, or a path")
    cmp_ = verbs.add_parser("compare", help="settings and metrics of runs side by side, with differences")
    cmp_.add_argument("run", nargs="+", help="two or more run names or paths")
    cmp_.add_argument("--only-changed", action="store_true")
    cfmt = cmp_.add_mutually_exclusive_group()
    cfmt.add_argument("--json", action="store_true")
    cfmt.add_argument("--md", action="store_true")
    rm = verbs.add_parser("rm", help="delete runs (refuses one that is being written)")
    rm.add_argument("run", nargs="+")
    rm.add_argument("--yes", action="store_true", help="do not ask")
    cl = verbs.add_parser("clean", help="remove stale partial folders, temp files and old copies (never a run, a "
                                        "folder being written, or the only copy of a run)")
    cl.add_argument("--include-resumable", action="store_true",
                    help="also remove interrupted runs that could still be resumed")
    for sp in (ls, sh, cmp_, rm, cl):
        sp.add_argument("--runs-dir", default="runs", help="the folder fits write into (default: runs)")


def resolve(runs_dir: str, name: str) -> Path:
    """A run given by name (inside ``runs_dir``) or by path; a one-line error when it is not a run."""
    from ..errors import DataError

    p = Path(name)
    if not (p / "run.json").is_file():
        p = Path(runs_dir) / name
    if not (p / "run.json").is_file():
        raise DataError(f"No run '{name}' (neither a path nor a run in '{runs_dir}'). See `transferkit runs list "
                        f"--runs-dir {runs_dir}`.")
    return p


def _fmt(args: argparse.Namespace) -> str:
    return "json" if args.json else "md" if args.md else "text"


def _list(args: argparse.Namespace) -> int:
    from ..runs.index import refresh, select
    from ..runs.inventory import inventory
    from ..runs.views import LIST_FIELDS, list_view

    entries = select(refresh(args.runs_dir), args.filter, args.sort, args.asc)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.sort and args.sort not in metrics and args.sort not in LIST_FIELDS:
        metrics.append(args.sort)
    print(list_view(entries, metrics, _fmt(args)))
    if args.json:
        return 0
    checked = inventory(args.runs_dir, check=args.verify)  # sizes of every listed file; --verify: SHA-256 too
    damaged = [e for e in checked if e.state == "damaged"]
    for e in damaged:
        print(f"damaged: {e.detail}")
    left = [e for e in checked if e.leftover]
    if left:
        print(f"{len(left)} leftover(s) of interrupted writes (`transferkit runs clean` removes the stale ones):")
        for e in left:
            print(f"  {e.path.name}  {e.state}  {e.detail}")
    return 2 if damaged else 0


def _show(args: argparse.Namespace) -> int:
    import json

    from ..runs.index import summarise
    from ..runs.integrity import verify

    p = resolve(args.runs_dir, args.run)
    e = summarise(p)
    print(f"run: {p}\nkind: {e['kind']}\ncreated: {e['created']}\nseconds: {e['seconds']}")
    try:
        verify(p)
        print("files: " + ("all match their SHA-256" if e["manifest"] else "no manifest (written before them)"))
        status = 0
    except Exception as err:  # noqa: BLE001  (a DataError naming the damaged file)
        print(f"files: DAMAGED: {err}")
        status = 2
    info = json.loads((p / "run.json").read_text(encoding="utf-8"))
    for item in info.get("lineage") or []:
        print(f"lineage: {item}")
    print("metrics:")
    for k, v in sorted(e["metrics"].items()):
        print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    print("settings:")
    for k, v in e["settings"].items():
        print(f"  {k}: {v}")
    return status


def _compare(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..runs.index import summarise
    from ..runs.views import compare_view

    if len(args.run) < 2:
        raise ConfigError("`runs compare` needs two or more runs.")
    entries = [summarise(resolve(args.runs_dir, r)) for r in args.run]
    print(compare_view(entries, args.only_changed, _fmt(args)))
    return 0


def _rm(args: argparse.Namespace) -> int:
    import sys

    from ..errors import ConfigError
    from ..runs.lifecycle import remove_run

    paths = [resolve(args.runs_dir, r) for r in args.run]
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("`runs rm` deletes runs: pass --yes to confirm (no terminal to ask on).")
        answer = input(f"Delete {len(paths)} run(s): {', '.join(str(p) for p in paths)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    for p in paths:
        remove_run(p)
        print(f"removed {p}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from ..runs.inventory import clean, inventory

    removed = clean(inventory(args.runs_dir), include_resumable=args.include_resumable)
    for e in removed:
        print(f"removed {e.path} ({e.state})")
    print(f"{len(removed)} leftover(s) removed from {args.runs_dir}")
    return 0


VERBS = {"list": _list, "show": _show, "compare": _compare, "rm": _rm, "clean": _clean}


def run(args: argparse.Namespace) -> int:
    return VERBS[args.runs_command](args)
