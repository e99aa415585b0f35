"""Run directories: atomic writing, safe loading, lineage."""
from .store import LoadedRun, RunWriter, load_run

__all__ = ["LoadedRun", "RunWriter", "load_run"]
