"""Run directories: atomic writing, safe loading, lineage."""
from .store import LoadedRun, load_run

__all__ = ["LoadedRun", "load_run"]
