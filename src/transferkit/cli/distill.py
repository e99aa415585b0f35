"""``transferkit distill``: distil a fitted teacher run into a smaller student run."""
from __future__ import annotations

import argparse

COMMAND = "distill"
HELP = "distil a fitted teacher run into a smaller student (soft targets, optional unlabelled data)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..distill.config import DistillConfig
    from .flags import add_config_flags

    p = subparsers.add_parser(COMMAND, help=HELP, description=(
        "Train a student (--student SPEC, or --student-layers K: the first K transformer layers of the teacher's "
        "encoder) on the teacher's soft targets mixed with the hard labels: alpha * CE + (1 - alpha) * KL_T * T^2. "
        "The teacher's logits are computed once; --unlabelled data join the transfer set with soft targets only. "
        "The report compares teacher, student and the same student trained without distillation (test metrics, "
        "parameters, file size, CPU latency). The student run loads like a fit run (predict, evaluate, export)."))
    p.add_argument("--config", help="distill.yaml of an earlier run (or any YAML with these keys); flags override it")
    add_config_flags(p, DistillConfig)
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted distillation (runs/NAME) from its "
                   "latest checkpoint; other flags must match the settings it was started with")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    from .parallel import add_nproc_flag

    add_nproc_flag(p, "the student run")


def run(args: argparse.Namespace) -> int:
    from ..distill import DistillConfig, distill
    from ..distill.report import summary_line

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet", "resume", "nproc_per_node")}
    base = DistillConfig.from_yaml(args.config).to_dict() if args.config else {}
    if args.resume:
        from pathlib import Path

        from ..distill.api import saved_config

        p = Path(args.resume)
        base = {**saved_config(p).to_dict(), **base, "runs_dir": str(p.parent), "name": p.name}
    config = DistillConfig.from_dict({**base, **values})
    from .parallel import launch_if_asked

    launched = launch_if_asked(args, COMMAND, config)
    if launched is not None:
        return launched
    result = distill(config, progress=not args.quiet, resume=bool(args.resume))
    if result.run_dir is None:  # a torchrun worker: rank 0 reports
        return 0
    cmp_ = result.comparison
    for key, label in (("teacher", "teacher"), ("student", "student"), ("no_distillation", "no distillation")):
        r = cmp_.get(key)
        if r is not None:
            print(f"{label:>15}: test macro-F1 {r['macro_f1']:.4f}, {r['parameters']:,} parameters, "
                  f"{r['latency']['b1']['seconds'] * 1e3:.2f} ms at batch 1 ({r['backbone']})")
    print(summary_line(cmp_))
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0
