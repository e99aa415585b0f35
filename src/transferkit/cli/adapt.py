"""`transferkit adapt`: unsupervised domain adaptation from a labelled source to unlabelled target data."""
from __future__ import annotations

import argparse
import dataclasses

from .main import _float_list, _typed

COMMAND = "adapt"


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..adapt.config import HELP, AdaptConfig
    from ..adapt.methods import METHODS

    methods = "; ".join(f"{n}: {METHODS.help(n)}" for n in METHODS.names())
    p = subparsers.add_parser(
        COMMAND, help="adapt to unlabelled target data (DANN, CDAN, CORAL, MMD, MCC, AdaBN, self-training)",
        description=f"Methods ('+' combines them, e.g. dann+mcc): {methods}.")
    p.add_argument("--config", help="adapt.yaml of an earlier run (or any YAML with these keys); flags override it")
    for f in dataclasses.fields(AdaptConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = HELP.get(f.name, "")
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=text)
        elif isinstance(default, list):
            p.add_argument(flag, dest=f.name, type=_float_list(f.name), default=argparse.SUPPRESS, help=text)
        else:
            typ = type(default) if default is not None else (
                int if f.name in ("image_size", "max_length", "num_threads") else str)
            p.add_argument(flag, dest=f.name, type=_typed(typ, flag), default=argparse.SUPPRESS,
                           help=f"{text} (default: {default})".strip())
    return p


def run(args: argparse.Namespace) -> int:
    from ..adapt import AdaptConfig, adapt

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    base = AdaptConfig.from_yaml(args.config).to_dict() if args.config else {}
    if "backbone" in values:
        base.pop("run", None)
    if "run" in values:
        base.pop("backbone", None)
    config = AdaptConfig.from_dict({**base, **values})
    result = adapt(config, progress=not args.quiet)
    m = result.metrics
    if "adapted" in m:
        print(f"target accuracy: source-only {m['source_only']['accuracy']:.4f}, {config.method} "
              f"{m['adapted']['accuracy']:.4f} (macro-F1 {m['source_only']['macro_f1']:.4f} -> "
              f"{m['adapted']['macro_f1']:.4f}; checkpoint chosen by '{config.select}', no target labels)")
    print(f"proxy A-distance: {m['a_distance']['before']:.3f} before, {m['a_distance']['after']:.3f} after")
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0
