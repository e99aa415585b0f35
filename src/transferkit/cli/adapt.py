"""`transferkit adapt`: unsupervised domain adaptation from a labelled source to unlabelled target data."""
from __future__ import annotations

import argparse

COMMAND = "adapt"


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..adapt.config import AdaptConfig
    from ..adapt.methods import METHODS
    from .flags import add_config_flags

    methods = "; ".join(f"{n}: {METHODS.help(n)}" for n in METHODS.names())
    p = subparsers.add_parser(
        COMMAND, help="adapt to unlabelled target data (DANN, CDAN, CORAL, MMD, MCC, AdaBN, self-training)",
        description=f"Methods ('+' combines them, e.g. dann+mcc): {methods}.")
    p.add_argument("--config", help="adapt.yaml of an earlier run (or any YAML with these keys); flags override it")
    add_config_flags(p, AdaptConfig, include_nested={"training": AdaptConfig.TRAINING_FLAGS})
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted adapt run (runs/NAME) from its "
                   "checkpoints; other flags must match the settings it was started with")
    from .parallel import add_nproc_flag

    add_nproc_flag(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..adapt import AdaptConfig, adapt

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet", "resume", "nproc_per_node")}
    base = AdaptConfig.from_yaml(args.config).to_dict() if args.config else {}
    if args.resume:
        from pathlib import Path

        from ..adapt.api import RESUME_CONFIG
        from ..runs.lifecycle import requested_config

        p = Path(args.resume)
        saved = requested_config(p, AdaptConfig, RESUME_CONFIG, "adapt")
        base = {**saved.to_dict(), **base, "runs_dir": str(p.parent), "name": p.name}
    if "backbone" in values:
        base.pop("run", None)
    if "run" in values:
        base.pop("backbone", None)
    config = AdaptConfig.from_dict({**base, **values})
    from .parallel import launch_if_asked

    launched = launch_if_asked(args, COMMAND, config)
    if launched is not None:
        return launched
    result = adapt(config, progress=not args.quiet, resume=bool(args.resume))
    if result.run_dir is None:  # a torchrun worker: rank 0 reports
        return 0
    m = result.metrics
    if "adapted" in m:
        print(f"target accuracy: source-only {m['source_only']['accuracy']:.4f}, {config.method} "
              f"{m['adapted']['accuracy']:.4f} (macro-F1 {m['source_only']['macro_f1']:.4f} -> "
              f"{m['adapted']['macro_f1']:.4f}; checkpoint chosen by '{config.select}', no target labels)")
    print(f"proxy A-distance: {m['a_distance']['before']:.3f} before, {m['a_distance']['after']:.3f} after")
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0
