"""``transferkit features``: export frozen features (with ids and labels) to .npz or .parquet; or, past one
process, in shards into a directory: ``--shard I/N`` (any launcher runs the N copies, then ``--merge``) or
``--cluster ray`` (a pool of Ray actors). Both end in ``DIR/features.parquet``, the single-process file's format."""
from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = "features"
HELP = "export frozen features (with ids and labels) to .npz or .parquet, or in shards (--shard, --cluster ray)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--backbone", help="backbone spec")
    src.add_argument("--run", help="a saved run whose backbone to use")
    p.add_argument("--data", help="image folder or table")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npz or FILE.parquet; a directory DIR/ with --shard, --cluster or --merge")
    for col in ("text", "image", "label", "id"):
        p.add_argument(f"--{col}-column", default="label" if col == "label" else None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--unlabelled", action="store_true", help="the data have no label column")
    p.add_argument("--engine", default="eager", help="eager | compiled | onnx | onnx-int8 (checked against eager)")
    p.add_argument("--seed", type=int, default=0, help="initialisation of scratch: backbones (default: 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker process or Ray actor (default: all cores; 1 per Ray actor)")
    dist = p.add_mutually_exclusive_group()
    dist.add_argument("--shard", metavar="I/N", help="compute shard I of N into DIR/shards/ (skipped when complete)")
    dist.add_argument("--merge", action="store_true", help="join DIR/shards/ into DIR/features.parquet")
    dist.add_argument("--cluster", choices=["ray"], help="compute every shard on Ray actors, then merge")
    p.add_argument("--address", default=None, help="with --cluster ray: the cluster to join (auto: this machine's)")
    p.add_argument("--actors", type=int, default=None, help="with --cluster ray: actors (default: CPUs / threads)")
    p.add_argument("--shard-rows", type=int, default=None, help="with --cluster ray: rows per shard (default: 4096)")


def _job(args: argparse.Namespace) -> object:
    from ..distributed.embedder import FeatureJob
    from ..errors import ConfigError
    from ..features import ENGINES

    if not args.data or not (args.backbone or args.run):
        raise ConfigError("transferkit features needs --data and one of --backbone / --run (only --merge works "
                          "without them).")
    ENGINES.get(args.engine)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be an integer >= 1, got {args.threads}.")
    return FeatureJob(str(args.data), args.backbone, args.run, args.text_column, args.image_column, args.label_column,
                      args.id_column, not args.unlabelled, args.image_size, args.max_length, args.seed, args.engine,
                      threads=args.threads)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    out = Path(args.output)
    ray_only = [f for f, v in (("--address", args.address), ("--actors", args.actors),
                               ("--shard-rows", args.shard_rows)) if v is not None]
    if ray_only and not args.cluster:
        raise ConfigError(f"{', '.join(ray_only)} only apply with --cluster ray.")
    if not (args.shard or args.merge or args.cluster):
        return _single(args, out)
    if out.suffix.lower() in (".npz", ".parquet"):
        raise ConfigError(f"--shard / --merge / --cluster write a directory of shards: give -o DIR/, not '{out}'.")
    if args.merge:
        from ..distributed.shards import merge_shards

        path, rows, count = merge_shards(out)
        print(f"merged {count} shard{'s' if count != 1 else ''}: {rows} rows of features in {path}")
        return 0
    job = _job(args)
    if args.shard:
        from ..distributed.extract import run_shard
        from ..distributed.shards import parse_shard

        shard = parse_shard(args.shard)
        report = run_shard(job, out, shard)
        path = shard.path(out)
        if report.skipped:
            print(f"shard {shard}: already complete in {path} (skipped)")
        else:
            start, stop = shard.rows(report.rows)
            print(f"shard {shard}: wrote {stop - start} x {report.dim} features to {path}")
        return 0
    from ..distributed.ray_extract import SHARD_ROWS, extract_on_ray

    report = extract_on_ray(job, out, args.actors, args.address, args.shard_rows or SHARD_ROWS,
                            progress=not args.quiet)
    print(report.summary())
    return 0


def _single(args: argparse.Namespace, out: Path) -> int:
    from ..features import FeatureCache
    from ..runs.features import export_features

    job = _job(args)
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    backbone, ds = job.load_backbone(), job.load_data()
    path = export_features(backbone, ds, out, cache=FeatureCache(engine=args.engine), progress=not args.quiet)
    print(f"wrote {len(ds)} x {backbone.meta.feature_dim} features to {path}")
    return 0
