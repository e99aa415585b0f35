"""Settings of a hyper-parameter search (``transferkit tune``): how many trials, where the study is stored, which
sampler and pruner, which validation metric. The CLI builds its flags from these fields."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import YamlConfig, setting
from ..errors import ConfigError, bad_param

# validation metrics a study can optimise, with their direction (``fit``'s ``val_metrics`` keys)
METRICS: dict[str, dict[str, str]] = {
    "classification": {"macro_f1": "maximize", "weighted_f1": "maximize", "accuracy": "maximize",
                       "macro_precision": "maximize", "macro_recall": "maximize",
                       "weighted_precision": "maximize", "weighted_recall": "maximize", "ece": "minimize"},
    "regression": {"r2": "maximize", "rmse": "minimize", "mae": "minimize"},
}
HEADLINE = {"classification": "macro_f1", "regression": "r2"}


@dataclass
class TuneConfig(YamlConfig):
    """How a search runs; the base fit config and the search space are given beside it."""

    trials: int = setting(20, "finished (complete or pruned) trials the study should hold; a re-run continues "
                              "the study up to this number")
    timeout: float | None = setting(None, "seconds after which no new trial starts (none: no limit)")
    storage: str | None = setting(None, "Optuna storage URL, e.g. postgresql://user@host/db (none: SQLite "
                                        "at runs/tune/NAME/study.db)")
    study: str = setting("tune", "study name: its folder runs/tune/NAME and its name in the storage")
    workers: int = setting(1, "local worker processes sharing the study (each loads the data once)")
    pruner: str = setting("hyperband", "stop unpromising trials at an epoch end: hyperband | median | none")
    sampler: str = setting("tpe", "how trials are proposed: tpe | random")
    metric: str | None = setting(None, "validation metric optimised (none: macro_f1; r2 for regression)")
    refit: bool = setting(False, "refit the best and the base config as runs and report their test metrics")
    heartbeat: int = setting(10, "seconds between a running trial's heartbeats; a trial silent for 3x this (its "
                                 "tuner was killed) is marked FAIL")
    seed: int | None = setting(None, "sampler seed (none: the base config's seed)")
    out: str | None = setting(None, "results folder (none: RUNS_DIR/tune/NAME)")

    def validate(self) -> TuneConfig:
        """Check types and ranges (one-line ``ConfigError``); returns ``self``."""
        from .search import PRUNERS, SAMPLERS

        self.check_types("TuneConfig")
        for name, lo in (("trials", 1), ("workers", 1), ("heartbeat", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad_param("TuneConfig", name, f"an integer >= {lo}", v)
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise bad_param("TuneConfig", "timeout", "a number of seconds > 0 (or left out)", self.timeout)
        if self.pruner not in PRUNERS:
            raise bad_param("TuneConfig", "pruner", " | ".join(PRUNERS.names()), self.pruner)
        if self.sampler not in SAMPLERS:
            raise bad_param("TuneConfig", "sampler", " | ".join(SAMPLERS.names()), self.sampler)
        if not self.study or any(c in self.study for c in "/\\\0") or self.study in (".", ".."):
            raise bad_param("TuneConfig", "study", "a plain name (no '/', '\\' or '..')", self.study)
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0):
            raise bad_param("TuneConfig", "seed", "an integer >= 0", self.seed)
        return self

    def metric_for(self, task: str) -> tuple[str, str]:
        """(metric name, ``"maximize"`` or ``"minimize"``) for ``task``; an unknown metric is a ConfigError."""
        name = self.metric or HEADLINE[task]
        known = METRICS[task]
        if name not in known:
            from ..errors import suggest

            raise ConfigError(f"Unknown {task} metric '{name}'.{suggest(name, known)} Choose one of: "
                              f"{', '.join(known)}.")
        return name, known[name]
