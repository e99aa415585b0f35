"""``transferkit compare``: data-efficiency study: transfer vs classical vs scratch across budgets."""
from __future__ import annotations

import argparse

from ..errors import ConfigError

COMMAND = "compare"
HELP = "data-efficiency study: transfer vs classical vs scratch across budgets"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    from ..config import FitConfig
    from .flags import add_config_flags

    p.add_argument("--config", help="YAML config file (fit keys); flags given here override it")
    add_config_flags(p, FitConfig, exclude=("strategy", "backbone", "name", "overwrite", "runs_dir", "val", "test"))
    p.add_argument("--strategies", default=None,
                   help="comma-separated study columns: registered strategies (see `transferkit info`) and "
                        "scratch (fine-tune on --scratch-backbone) (default: every one that runs on the data, "
                        "except auto)")
    p.add_argument("--backbones", default=None, help="comma-separated transfer backbones "
                   "(default: packaged:efficientnet_lite0 for images, packaged:minilm-l6 for text)")
    p.add_argument("--budgets", default="1,5,10,50,all", help="labelled examples per class, fractions, or all")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--scratch-backbone", default=None, help="default scratch:cnn / scratch:transformer")
    p.add_argument("--out", default="runs/compare", help="study folder (re-run to resume)")


def run(args: argparse.Namespace) -> int:
    from ..config import FitConfig
    from ..study import StudyConfig
    from ..study.compare import parse_budget

    skip = ("command", "config", "quiet", "strategies", "backbones", "budgets", "seeds", "scratch_backbone", "out")
    values = {k: v for k, v in vars(args).items() if k not in skip}
    base = FitConfig.from_yaml(args.config).to_dict() if args.config else {}
    fit_cfg = FitConfig.from_dict({**base, **values})
    if args.backbones:
        backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    else:
        backbones = None
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds expects integers like 0,1,2; got {args.seeds!r}.") from None
    from ..data import Columns, load_path

    data = load_path(fit_cfg.train, Columns(fit_cfg.text_column, fit_cfg.image_column, fit_cfg.label_column,
                                            fit_cfg.id_column), fit_cfg.strict, task=fit_cfg.task) \
        if fit_cfg.train else None
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies else None
    cfg = StudyConfig(base=fit_cfg, strategies=strategies,
                      backbones=backbones or [], budgets=[parse_budget(b) for b in args.budgets.split(",")],
                      seeds=seeds, scratch_backbone=args.scratch_backbone, out=args.out)
    from ..study.compare import Study

    study = Study(cfg, data, progress=not args.quiet)
    if backbones is None:
        study.cfg.backbones = ["packaged:efficientnet_lite0" if study.data.modality == "image" else "packaged:minilm-l6"]
    summary = study.run()
    from ..study.report import markdown_table

    print("\n".join(markdown_table(summary)))
    print(f"\n{summary['verdict']}\nreport: {cfg.out}/report.md")
    return 0
