"""``transferkit fit``: fit a backbone to labelled data and write a run."""
from __future__ import annotations

import argparse

COMMAND = "fit"
HELP = "fit a backbone to labelled data and write a run"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    from ..config import FitConfig
    from .flags import add_config_flags
    from .parallel import add_nproc_flag

    p.add_argument("--config", help="YAML config file (fit keys); flags given here override it")
    add_config_flags(p, FitConfig)
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted fit (runs/NAME) from its latest "
                   "checkpoint; other flags must match the settings it was started with")
    add_nproc_flag(p)


def run(args: argparse.Namespace) -> int:
    from ..config import FitConfig
    from ..pipeline import fit

    values = {k: v for k, v in vars(args).items()
              if k not in ("command", "config", "quiet", "resume", "nproc_per_node")}
    base = FitConfig.from_yaml(args.config).to_dict() if args.config else {}
    resume = getattr(args, "resume", None)
    if resume:
        from pathlib import Path

        from ..pipeline import saved_config

        p = Path(resume)
        base = {**saved_config(p).to_dict(), **base, "runs_dir": str(p.parent), "name": p.name}
    config = FitConfig.from_dict({**base, **values})
    from ..pipeline import check_names
    from .parallel import launch_if_asked

    launched = launch_if_asked(args, COMMAND, config, check_names)  # this process then only waits for torchrun
    if launched is not None:
        return launched
    result = fit(config, progress=not args.quiet, resume=bool(resume))
    if result.run_dir is None:  # a torchrun worker: rank 0 reports
        return 0
    from ..evaluation.metrics import headline

    name, value = headline(result.metrics, config.task)
    auto = result.details.get("auto") if isinstance(result.details, dict) else None
    strategy, backbone = config.strategy, result.model.backbone.meta.spec  # the backbone fit used
    if auto:
        print(f"auto: {auto['reason']}")
        strategy = auto["strategy"]
    print(f"{strategy} on {backbone}: test {name} = {value:.4f}")
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0
