"""``transferkit features``: export frozen features (with ids and labels) to .npz or .parquet."""
from __future__ import annotations

import argparse

COMMAND = "features"
HELP = "export frozen features (with ids and labels) to .npz or .parquet"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone", help="backbone spec")
    src.add_argument("--run", help="a saved run whose backbone to use")
    p.add_argument("--data", required=True, help="image folder or table")
    p.add_argument("-o", "--output", required=True, help="FILE.npz or FILE.parquet")
    for col in ("text", "image", "label", "id"):
        p.add_argument(f"--{col}-column", default="label" if col == "label" else None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--unlabelled", action="store_true", help="the data have no label column")
    p.add_argument("--engine", default="eager", help="eager | compiled | onnx | onnx-int8 (checked against eager)")


def run(args: argparse.Namespace) -> int:
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
    from ..features import ENGINES, FeatureCache

    ENGINES.get(args.engine)
    out = export_features(backbone, ds, args.output, cache=FeatureCache(engine=args.engine), progress=not args.quiet)
    print(f"wrote {len(ds)} x {backbone.meta.feature_dim} features to {out}")
    return 0
