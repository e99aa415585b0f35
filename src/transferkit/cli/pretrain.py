"""``transferkit pretrain``: continued masked-LM pretraining of a text encoder on unlabelled text."""
from __future__ import annotations

import argparse

COMMAND = "pretrain"
HELP = "continue pretraining a text encoder on unlabelled text (masked LM); use it with fit --backbone run:PATH"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..pretraining.config import PretrainConfig
    from .flags import add_config_flags

    p = subparsers.add_parser(COMMAND, help=HELP, description=(
        "Masked-language-model pretraining of a Hugging Face text encoder on your unlabelled text, for a step "
        "(--max-steps) and/or time (--max-minutes) budget. The run (runs/NAME) holds the adapted encoder; "
        "fit on it with `transferkit fit --backbone run:runs/NAME ...`."))
    p.add_argument("--config", help="pretrain.yaml of an earlier run (or any YAML with these keys); flags override it")
    add_config_flags(p, PretrainConfig, include_nested={"training": PretrainConfig.TRAINING_FLAGS})
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted pretraining run (runs/NAME) from its "
                   "latest checkpoint; other flags must match the settings it was started with")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    from .parallel import add_nproc_flag

    add_nproc_flag(p, "the run (the encoder)")


def run(args: argparse.Namespace) -> int:
    from ..pretraining import PretrainConfig, pretrain

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet", "resume", "nproc_per_node")}
    base = PretrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    if args.resume:
        from pathlib import Path

        from ..pretraining.api import saved_config

        p = Path(args.resume)
        base = {**saved_config(p).to_dict(), **base, "runs_dir": str(p.parent), "name": p.name}
    config = PretrainConfig.from_dict({**base, **values})
    from .parallel import launch_if_asked

    launched = launch_if_asked(args, COMMAND, config)
    if launched is not None:
        return launched
    result = pretrain(config, progress=not args.quiet, resume=bool(args.resume))
    if result.run_dir is None:  # a torchrun worker: rank 0 reports
        return 0
    m, ho = result.metrics, result.metrics["heldout"]
    before = f"{ho['before']['accuracy']:.4f} -> " if ho.get("before") else ""
    print(f"{config.objective} on {config.backbone}: {m['steps']} steps ({m['stopped']}), final loss "
          f"{m['final_loss']:.4f}; held-out masked-token accuracy {before}{ho['after']['accuracy']:.4f}")
    print(f"note: {result.details['head']['note']}")
    print(f"run: {result.run_dir}  (use it: transferkit fit --backbone run:{result.run_dir.as_posix()} --train ...)")
    return 0
