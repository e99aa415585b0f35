"""One trial: the base config with the sampled changes, fitted on the shared splits; its value is the validation
metric. Each epoch's validation score reaches the pruner through the engine's :func:`epoch_listener`."""
from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import FitConfig
from ..engine.callbacks import epoch_listener
from ..errors import ConfigError, DataError, TransferkitError
from ..features import FeatureCache
from .search import optuna_module
from .space import SearchSpace
from .storage import REPEAT_ATTR


class RepeatedConfig(TransferkitError):
    """The sampler proposed a config that an earlier trial already fitted (see :meth:`Objective.repeats`)."""


class _QuietRepeats(logging.Filter):
    """Drops Optuna's two 'Trial N failed ...' warnings (with a traceback) for a proposal skipped as a repeat:
    skipping is routine, not a failure to report."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        m = re.match(r"Trial (\d+) failed with (parameters|value)", str(record.msg))
        if m is None:
            return True
        if RepeatedConfig.__name__ + "(" in str(record.msg):
            self.numbers.add(m[1])
            return False
        return m[1] not in self.numbers


def quiet_repeats() -> None:
    """Install :class:`_QuietRepeats` on Optuna's optimize logger (once per process)."""
    log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _QuietRepeats) for f in log.filters):
        log.addFilter(_QuietRepeats())


CAUGHT = (ConfigError, DataError, RepeatedConfig)  # a trial failing with these is FAIL and the search goes on


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
        quiet_repeats()

    def config(self, changes: dict[str, Any]) -> FitConfig:
        return self.base.updated(**changes).validate()

    @staticmethod
    def repeats(trial: Any) -> Any:
        """The earliest trial of ``trial``'s study, finished (complete or pruned) or running in another worker, with
        exactly its parameters, or None. Fitting it again would cost a trial's compute for a known result (the
        splits and seed are shared); such a proposal is skipped as FAIL (which the samplers ignore) with the
        ``repeats`` attribute, and does not count towards the trials asked for. An enqueued trial is never a
        repeat."""
        trials = trial.study.get_trials(deepcopy=False)
        if any(t.number == trial.number and "fixed_params" in t.system_attrs for t in trials):
            return None  # enqueued (study.enqueue_trial): asked for explicitly, so fitted even if seen before
        return next((t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "RUNNING")
                     and t.number != trial.number and t.params == trial.params), None)

    def draw(self, trial: Any) -> dict[str, Any]:
        """The trial's config changes; :class:`RepeatedConfig` when they repeat another trial's (see
        :meth:`repeats`)."""
        changes = self.space.suggest(trial, self.base.strategy)
        earlier = self.repeats(trial)
        if earlier is not None:
            trial.set_user_attr(REPEAT_ATTR, earlier.number)
            raise RepeatedConfig(f"the config of trial #{earlier.number} (already fitted)")
        return changes

    def __call__(self, trial: Any, changes: dict[str, Any] | None = None) -> float:
        """The validation metric of the trial's config (``changes``: what :meth:`draw` returned; drawn here when
        not given)."""
        from ..pipeline import fit

        changes = self.draw(trial) if changes is None else changes
        t0, cpu0 = time.perf_counter(), time.process_time()
        pruning = EpochPruning(trial, self.direction)
        try:
            cfg = self.config(changes)
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
