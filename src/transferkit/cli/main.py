"""The `transferkit` command: thin subcommands over the Python API."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from ..errors import ConfigError, TransferkitError

FIT_HELP = {
    "backbone": "backbone spec, e.g. packaged:efficientnet_lite0, timm:resnet18, hf:DIR (see `transferkit info`)",
    "strategy": "linear-probe | fine-tune | lp-ft | hybrid (text) | auto",
    "task": "classification | regression",
    "train": "image folder (one sub-folder per class) or CSV/JSONL/Parquet table",
    "val": "validation data (default: split from train)",
    "test": "test data (default: split from train)",
    "text_column": "text column(s) of a table, comma-separated columns are joined",
    "freeze": "freeze the bottom K layer groups during fine-tuning",
    "layer_decay": "layer-wise LR decay per group below the head (1 = none)",
    "probe_grid": "comma-separated C values tried by the linear probe",
    "class_weights": "weight classes inversely to their frequency",
    "candidates": "comma-separated backbone specs to rank when --backbone auto",
    "engine": "feature-extraction engine: eager | compiled | onnx | onnx-int8 (checked against eager)",
    "precision": "training arithmetic: fp32 | bf16 (CPU autocast; about 2x faster on CPUs with native bf16)",
    "min_steps": "small data: repeat passes within each epoch until training has at least this many steps",
}


def _add_fit_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    from ..config import FitConfig

    p.add_argument("--config", help="YAML config file (fit keys); flags given here override it")
    for f in dataclasses.fields(FitConfig):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        helptext = FIT_HELP.get(f.name, "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=helptext)
        elif isinstance(default, list):
            p.add_argument(flag, dest=f.name, type=_float_list(f.name), default=argparse.SUPPRESS, help=helptext)
        else:
            typ = type(default) if default is not None else (int if f.name in ("image_size", "max_length",
                                                                                "num_threads") else str)
            p.add_argument(flag, dest=f.name, type=_typed(typ, flag), default=argparse.SUPPRESS,
                           help=f"{helptext} (default: {default})".strip())


def _typed(typ, flag):
    def conv(v: str):
        try:
            return typ(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {typ.__name__}, got {v!r}") from None
    return conv


def _float_list(name):
    def conv(v: str):
        try:
            return [float(x) for x in v.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} expects numbers like 0.1,1,10") from None
    return conv


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="transferkit", description="Transfer learning with honest evaluation.")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_fit_flags(sub.add_parser("fit", help="fit a backbone to labelled data and write a run"))
    ev = sub.add_parser("evaluate", help="evaluate a saved run on labelled data")
    ev.add_argument("run")
    ev.add_argument("data")
    ev.add_argument("--out", help="directory for metrics and plots (default: RUN/eval-DATA)")
    pr = sub.add_parser("predict", help="predict with a saved run")
    pr.add_argument("run")
    pr.add_argument("inputs", nargs="+", help="image files/folders, a .txt file (one text per line) or a table")
    pr.add_argument("-o", "--output", help="output .csv or .json (default: CSV on stdout)")
    pr.add_argument("--top-k", type=int, default=3)
    cmp_ = sub.add_parser("compare", help="data-efficiency study: transfer vs classical vs scratch across budgets")
    _add_fit_flags(cmp_, exclude=("strategy", "backbone", "name", "overwrite", "runs_dir", "val", "test"))
    cmp_.add_argument("--strategies", default=None,
                      help="comma-separated: classical, scratch, linear-probe, fine-tune, lp-ft, hybrid (text: TF-IDF "
                           "+ embeddings) (default: all five, plus hybrid for text)")
    cmp_.add_argument("--backbones", default=None, help="comma-separated transfer backbones "
                      "(default: packaged:efficientnet_lite0 for images, packaged:minilm-l6 for text)")
    cmp_.add_argument("--budgets", default="1,5,10,50,all", help="labelled examples per class, fractions, or all")
    cmp_.add_argument("--seeds", default="0,1,2")
    cmp_.add_argument("--scratch-backbone", default=None, help="default scratch:cnn / scratch:transformer")
    cmp_.add_argument("--out", default="runs/compare", help="study folder (re-run to resume)")
    fe = sub.add_parser("features", help="export frozen features (with ids and labels) to .npz or .parquet")
    src = fe.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone", help="backbone spec")
    src.add_argument("--run", help="a saved run whose backbone to use")
    fe.add_argument("--data", required=True, help="image folder or table")
    fe.add_argument("-o", "--output", required=True, help="FILE.npz or FILE.parquet")
    for col in ("text", "image", "label", "id"):
        fe.add_argument(f"--{col}-column", default="label" if col == "label" else None)
    fe.add_argument("--image-size", type=int, default=None)
    fe.add_argument("--max-length", type=int, default=None)
    fe.add_argument("--unlabelled", action="store_true", help="the data have no label column")
    fe.add_argument("--engine", default="eager", help="eager | compiled | onnx | onnx-int8 (checked against eager)")
    demo = sub.add_parser("demo", help="offline demo: digits, packaged EfficientNet-Lite0 vs scratch CNN")
    demo.add_argument("--runs-dir", default="runs/demo")
    demo.add_argument("--fast", action="store_true", help="a smaller, quicker demo")
    sub.add_parser("info", help="list backbone sources, packaged backbones and strategies")
    for name, mod in _extensions().items():
        mod.add_parser(sub)
    return ap


def _extensions() -> dict:
    """Sub-commands that live in their own module: ``transferkit.cli.<module>`` with ``COMMAND``,
    ``add_parser(subparsers)`` and ``run(args) -> int``."""
    import importlib
    import pkgutil

    from .. import cli

    found = {}
    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if info.name in ("main", "__main__"):
            continue
        mod = importlib.import_module(f"{cli.__name__}.{info.name}")
        if hasattr(mod, "COMMAND"):
            found[mod.COMMAND] = mod
    return found


def cmd_fit(args: argparse.Namespace) -> int:
    from ..config import FitConfig
    from ..pipeline import fit

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    base = FitConfig.from_yaml(args.config).to_dict() if args.config else {}
    config = FitConfig.from_dict({**base, **values})
    result = fit(config, progress=not args.quiet)
    from ..evaluation.metrics import headline

    name, value = headline(result.metrics, config.task)
    auto = result.details.get("auto") if isinstance(result.details, dict) else None
    strategy, backbone = config.strategy, config.backbone
    if auto:
        print(f"auto: {auto['reason']}")
        strategy, backbone = auto["strategy"], auto["backbone"] or "pixels/TF-IDF"
    print(f"{strategy} on {backbone}: test {name} = {value:.4f}")
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    if result.model is None:
        print("note: the classical baseline has no backbone + head to save; the run holds its report and metrics.")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..runs import load_run
    from ..runs.evaluate import evaluate_run

    run = load_run(args.run)
    out = Path(args.out) if args.out else run.path / f"eval-{Path(args.data).name.split('.')[0]}"
    metrics, report = evaluate_run(run, args.data, out)
    keys = ("mae", "rmse", "r2") if "r2" in metrics else ("accuracy", "macro_f1", "weighted_f1", "ece")
    print("  ".join(f"{k}={metrics[k]:.4f}" for k in keys))
    print(f"report: {report}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..runs import load_run
    from ..runs.predict import inputs_to_dataset, predict_dataset
    from ..runs.writers import write_rows

    run = load_run(args.run)
    rows = predict_dataset(run, inputs_to_dataset(run, args.inputs), top_k=args.top_k)
    write_rows(rows, args.output)
    return 0


def cmd_info(_: argparse.Namespace) -> int:
    from ..backbones import SOURCES
    from ..backbones.packaged import PACKAGED_NAMES, is_installed
    from ..strategies import STRATEGIES

    print("Backbone sources (spec = SOURCE:NAME):")
    for s in SOURCES.names():
        print(f"  {s + ':':<13} {SOURCES.help(s)}")
    print("\nPackaged offline backbones (pip install 'transferkit[offline]'):")
    for n in PACKAGED_NAMES:
        print(f"  packaged:{n:<20} {'installed' if is_installed(n) else 'not installed'}")
    print("\nScratch baselines: scratch:cnn (images), scratch:transformer (text), scratch:TIMM_ARCH")
    print("\nStrategies:")
    for s in STRATEGIES.names():
        print(f"  {s:<13} {STRATEGIES.help(s)}")
    from ..adapt import METHODS
    from ..ranking.scores import METRICS

    print("\nDomain adaptation methods (`transferkit adapt --method A[+B]`):")
    for m in METHODS.names():
        print(f"  {m:<14} {METHODS.help(m)}")
    print(f"\nTransferability metrics (`transferkit rank --metric M`): {', '.join(METRICS)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.runs_dir, fast=args.fast, progress=not args.quiet)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..config import FitConfig
    from ..study import StudyConfig, compare
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
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    else:
        strategies = ["classical", "scratch", "linear-probe", "fine-tune", "lp-ft"]
        if data is not None and data.modality == "text":
            strategies.append("hybrid")
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


def cmd_features(args: argparse.Namespace) -> int:
    from ..backbones import create_backbone
    from ..data import Columns, load_path
    from ..runs.features import export_features

    if args.run:
        from ..runs import load_run

        backbone = load_run(args.run).model.backbone
    else:
        backbone = create_backbone(args.backbone, image_size=args.image_size, max_length=args.max_length)
    ds = load_path(args.data, Columns(args.text_column, args.image_column, args.label_column, args.id_column),
                   labelled=not args.unlabelled)
    from ..engine.runtimes import ENGINES
    from ..strategies import FeatureCache

    ENGINES.get(args.engine)
    out = export_features(backbone, ds, args.output, cache=FeatureCache(engine=args.engine), progress=not args.quiet)
    print(f"wrote {len(ds)} x {backbone.meta.feature_dim} features to {out}")
    return 0


COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "predict": cmd_predict, "info": cmd_info, "demo": cmd_demo,
            "compare": cmd_compare, "features": cmd_features}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed a one-line usage error
        return int(e.code or 0)
    try:
        handler = COMMANDS.get(args.command) or _extensions()[args.command].run
        return handler(args)
    except TransferkitError as e:
        print(f"transferkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("transferkit: interrupted; no run was written.", file=sys.stderr)
        return 130
    except (TypeError, ValueError) as e:
        if isinstance(e, TypeError) and "FitConfig" not in str(e):
            raise
        print(f"transferkit: error: {ConfigError(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
