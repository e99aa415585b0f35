"""One builder from a config dataclass to argparse flags (help from each field's metadata), and back."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..config import nested_configs


def _kind(annotation: Any) -> str:
    a = str(annotation)
    for kind in ("bool", "list[float]", "int", "float"):
        if a == kind or a.startswith(f"{kind} ") or a.startswith(f"{kind}|"):
            return kind
    return "str"


def _typed(typ: type, flag: str):
    def conv(v: str):
        try:
            return typ(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {typ.__name__}, got {v!r}") from None
    return conv


def _float_list(flag: str):
    def conv(v: str):
        try:
            return [float(x) for x in v.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects numbers like 0.1,1,10") from None
    return conv


def add_config_flags(p: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = (),
                     include_nested: dict[str, tuple[str, ...]] | None = None) -> None:
    """``--field-name`` for every field of ``cls`` (and, flat, of its nested configs such as ``training``).

    Flags given on the command line land in ``args`` under the field's name; absent ones are not set at all
    (``argparse.SUPPRESS``), so a YAML ``--config`` or a resumed run's settings fill them. ``include_nested``
    limits a nested config to some of its fields (e.g. adapt uses six of the training settings).
    """
    nested = nested_configs(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        if f.name in nested:
            keep = (include_nested or {}).get(f.name)
            for g in dataclasses.fields(nested[f.name]):
                if g.name not in exclude and (keep is None or g.name in keep):
                    _add(p, g, getattr(getattr(defaults, f.name), g.name))
            continue
        _add(p, f, getattr(defaults, f.name))


def _add(p: argparse.ArgumentParser, f: dataclasses.Field, default: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    text = f.metadata.get("help", "")
    kind = _kind(f.type)
    if kind == "bool":
        p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
    elif kind == "list[float]":
        p.add_argument(flag, dest=f.name, type=_float_list(flag), default=argparse.SUPPRESS, help=text)
    else:
        typ = {"int": int, "float": float}.get(kind, str)
        p.add_argument(flag, dest=f.name, type=_typed(typ, flag), default=argparse.SUPPRESS,
                       help=f"{text} (default: {default})".strip())


def given_flags(args: argparse.Namespace, skip: tuple[str, ...]) -> dict[str, Any]:
    """The config values given as flags (flat: ``YamlConfig.from_dict`` moves training keys into ``training``)."""
    return {k: v for k, v in vars(args).items() if k not in skip}
