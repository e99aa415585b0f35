"""Hyper-parameter search over fit configs with Optuna (``transferkit tune``).

A base :class:`~transferkit.config.FitConfig`, a search space of its fields (:mod:`.space`) and a
:class:`TuneConfig`; trials share one load of the data, one split and one feature cache, are scored on the
validation split, and are pruned at epoch ends through the engine's epoch listener. The study lives in an Optuna
RDB storage (SQLite by default, PostgreSQL by URL) that a re-run continues and K local workers share.
"""
from __future__ import annotations

from .api import TuneResult, tune
from .config import METRICS, TuneConfig
from .space import Param, SearchSpace, load_space, parse_space

__all__ = ["METRICS", "Param", "SearchSpace", "TuneConfig", "TuneResult", "load_space", "parse_space", "tune"]
