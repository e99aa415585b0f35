"""``transferkit tune``: search the hyper-parameters of a fit config (Optuna) and write runs/tune/NAME."""
from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = "tune"
HELP = "search hyper-parameters of a fit config (Optuna): best.yaml, trials.csv, report.md"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    from ..tuning.config import TuneConfig
    from .flags import add_config_flags

    p.add_argument("--config", required=True, help="base fit config (YAML): every trial starts from it")
    p.add_argument("--space", required=True, help="search space (YAML): FIELD: {low: L, high: H, log: true} or "
                                                  "FIELD: {choices: [...]}, FitConfig field names (flat or dotted)")
    for part in ("train", "val", "test"):
        p.add_argument(f"--{part}", default=None, help=f"{part} data, instead of the base config's (an image folder "
                                                           "or a CSV/JSONL/Parquet table)")
    p.add_argument("--study", default=None, help="study name (default: the base config's file name)")
    add_config_flags(p, TuneConfig, exclude=("study",))


def run(args: argparse.Namespace) -> int:
    from ..config import FitConfig
    from ..tuning import TuneConfig, load_space, tune
    from .flags import given_flags

    base = FitConfig.from_yaml(args.config)
    data = {k: getattr(args, k) for k in ("train", "val", "test") if getattr(args, k)}
    if data:
        base = base.updated(**data)
    space = load_space(args.space)
    values = given_flags(args, ("command", "config", "space", "quiet", "train", "val", "test", "study"))
    settings = TuneConfig.from_dict({**values, "study": args.study or Path(args.config).stem})
    r = tune(base, space, settings, progress=not args.quiet)
    s = r.summary
    c = r.counts
    print(f"study {r.study}: {c['finished']} finished ({c['complete']} complete, {c['pruned']} pruned), "
          f"{c['fail']} failed")
    if r.best_number is not None:
        print(f"best: trial #{r.best_number}, validation {s['metric']} = {r.best_value:.4f}  {r.best_params}")
        print(f"best config: {s['best_yaml']}")
    if r.refit:
        b, d = r.refit["best"], r.refit["default"]
        print(f"refit test {s['metric']}: best {b['test']:.4f} (run {b['run']}), default {d['test']:.4f} "
              f"(run {d['run']})")
    print(f"report: {s['files']['report']}")
    return 0
