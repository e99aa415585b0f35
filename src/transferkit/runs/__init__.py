"""Run directories: atomic writing, safe loading, lineage, integrity, the run store."""
from __future__ import annotations

from typing import Any

__all__ = ["LoadedRun", "load_run"]


def __getattr__(name: str) -> Any:  # lazy: `transferkit runs list` must not import torch
    if name in __all__:
        from . import store

        return getattr(store, name)
    raise AttributeError(name)
