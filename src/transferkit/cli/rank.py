"""``transferkit rank``: score candidate backbones (and the classical baseline) on labelled data; print a table."""
from __future__ import annotations

import argparse

COMMAND = "rank"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..ranking.scores import METRICS

    p = subparsers.add_parser(COMMAND, help="rank backbones by transferability (LogME, LEEP, NCE, H-score, k-NN) "
                                            "against the classical baseline")
    p.add_argument("--data", required=True, help="labelled image folder or CSV/JSONL/Parquet table")
    p.add_argument("--backbones", required=True, help="comma-separated backbone specs, e.g. "
                   "packaged:efficientnet_lite0,packaged:efficientnet_lite1,scratch:cnn")
    p.add_argument("--metric", default="logme", choices=METRICS, help="the ranking score (default: logme)")
    p.add_argument("--all-metrics", action="store_true", help="also compute and show every other score")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="do not score the classical baseline (pixels / TF-IDF + logistic regression)")
    p.add_argument("--max-samples", type=int, default=2000,
                   help="score a stratified subset of at most this many examples (0 = all; default 2000)")
    for col in ("text", "image", "label", "id"):
        p.add_argument(f"--{col}-column", default="label" if col == "label" else None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", default=None, help="also write the ranking to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ..data import Columns, load_path
    from ..errors import ConfigError
    from ..ranking.rank import METRIC_HELP, rank_backbones
    from ..ranking.scores import METRICS

    if args.max_samples < 0:
        raise ConfigError(f"--max-samples must be >= 0 (0 = all); got {args.max_samples}.")
    specs = [s.strip() for s in args.backbones.split(",") if s.strip()]
    if not specs:
        raise ConfigError("--backbones names no backbone; give comma-separated specs (see `transferkit info`).")
    ds = load_path(args.data, Columns(args.text_column, args.image_column, args.label_column, args.id_column))
    others = [m for m in METRICS if m != args.metric] if args.all_metrics else []
    ranking = rank_backbones(ds, specs, args.metric, metrics=others, baseline=args.baseline,
                             image_size=args.image_size, max_length=args.max_length,
                             max_samples=args.max_samples or None, batch_size=args.batch_size, seed=args.seed,
                             progress=not args.quiet)
    print(f"Transferability on '{args.data}': {ranking.n_samples} examples, {ranking.n_classes} classes, "
          f">= {ranking.labels_per_class} per class. Score: {METRIC_HELP[args.metric]}; higher is better, and only "
          "differences between candidates on the same data mean something.")
    for note in ranking.notes:
        print(f"({note})")
    print()
    print("\n".join(ranking.table()))
    print()
    print(ranking.recommendation())
    if args.json_out:
        import json
        from pathlib import Path

        Path(args.json_out).write_text(json.dumps(ranking.to_dict(), indent=2), encoding="utf-8")
    return 0
