"""One trial: the base config with the sampled changes, fitted on the shared splits; its value is the validation
metric. Each epoch's validation score reaches the pruner through the engine's :func:`epoch_listener`."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import FitConfig
from ..engine.callbacks import epoch_listener
from ..errors import ConfigError, DataError
from ..features import FeatureCache
from .search import optuna_module
from .space import SearchSpace

CAUGHT = (ConfigError, DataError)  # a trial failing with these is FAIL and the search goes on


def memory_mb() -> dict[str, float]:
    """This process's resident memory now (``rss_mb``, Linux) and its peak so far (``peak_rss_mb``), in MiB; both
    stay flat across trials when trials free what they allocate."""
    out = {}
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        out["peak_rss_mb"] = round(kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024, 1)
        with open("/proc/self/statm", encoding="ascii") as f:
            out["rss_mb"] = round(int(f.read().split()[1]) * resource.getpagesize() / 2**20, 1)
    except (ImportError, OSError, ValueError, IndexError):  # not POSIX / not Linux: what could be read
        pass
    return out


@contextmanager
def _no_loader_bars() -> Iterator[None]:
    """No transformers weight-loading bar per trial (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


class EpochPruning:
    """Reports each epoch's validation score as the trial's intermediate value (step = epoch, counted over the
    whole fit) and raises ``optuna.TrialPruned`` when the pruner says so.

    The engine's score is higher-is-better (macro-F1; minus RMSE for regression); for a study that minimises it
    is negated, so that the pruner compares in the study's direction."""

    def __init__(self, trial: Any, direction: str, last_epoch: int | None = None) -> None:
        self.trial, self.sign, self.epochs = trial, (1.0 if direction == "maximize" else -1.0), 0
        self.last_epoch = last_epoch  # the trial's planned epochs: pruning at (or after) it would save nothing

    def __call__(self, score: float) -> None:
        self.epochs += 1
        self.trial.report(self.sign * score, self.epochs)
        if self.last_epoch is not None and self.epochs >= self.last_epoch:
            return
        if self.trial.should_prune():
            raise optuna_module().TrialPruned(f"pruned after epoch {self.epochs} (validation score {score:.4f})")


class Objective:
    """``objective(trial) -> validation metric`` over fixed splits.

    The fit's *test* part is the validation split as well, so no trial ever evaluates (or extracts features of)
    the test split: only a refit of the chosen config does. Trials write no run (``save=False``).
    """

    def __init__(self, base: FitConfig, space: SearchSpace, splits: Any, metric: str, direction: str,
                 cache: FeatureCache) -> None:
        self.base, self.space, self.splits, self.metric, self.direction = base, space, splits, metric, direction
        self.cache = cache

    def config(self, changes: dict[str, Any]) -> FitConfig:
        return self.base.updated(**changes).validate()

    def __call__(self, trial: Any) -> float:
        from ..pipeline import fit

        t0, cpu0 = time.perf_counter(), time.process_time()
        pruning = EpochPruning(trial, self.direction)
        try:
            cfg = self.config(self.space.suggest(trial))
            trial.set_user_attr("epochs_planned", cfg.training.epochs)
            pruning.last_epoch = cfg.training.epochs
            with epoch_listener(pruning), _no_loader_bars():
                r = fit(cfg, train=self.splits.train, val=self.splits.val, test=self.splits.val, progress=False,
                        save=False, cache=self.cache)
            return float(r.val_metrics[self.metric])
        except CAUGHT as e:
            trial.set_user_attr("error", str(e))
            raise
        finally:
            trial.set_user_attr("epochs_run", pruning.epochs)
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
            trial.set_user_attr("cpu_seconds", round(time.process_time() - cpu0, 3))
            for k, v in memory_mb().items():
                trial.set_user_attr(k, v)
