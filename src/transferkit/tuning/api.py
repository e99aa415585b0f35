"""``tune``: search the hyper-parameters of a fit config with Optuna and leave the results in runs/tune/NAME."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FitConfig
from ..data import Dataset
from ..errors import ConfigError
from ..features import FeatureCache
from .config import TuneConfig
from .results import best_config, write_results
from .search import optuna_module
from .space import SearchSpace, load_space, parse_space
from .storage import counts, default_url, fail_stale, shown
from .worker import TrialSlot, run_trials, session, spawn, wait_for


@dataclass
class TuneResult:
    """What a search found; the same as ``runs/tune/NAME/report.md`` in numbers."""

    study: str
    out_dir: Path
    counts: dict[str, int]
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_config: FitConfig | None = None
    refit: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def _as_config(base: FitConfig | str | Path | dict[str, Any]) -> FitConfig:
    if isinstance(base, FitConfig):
        return base.validate()
    if isinstance(base, dict):
        return FitConfig.from_dict(base).validate()
    return FitConfig.from_yaml(base).validate()


def _as_space(space: SearchSpace | str | Path | dict[str, Any]) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    return parse_space(space) if isinstance(space, dict) else load_space(space)


@contextmanager
def _optuna_quiet(progress: bool) -> Iterator[None]:
    """Optuna's per-trial INFO lines off (the progress bar shows them); its warnings too with ``progress=False``."""
    logging = optuna_module().logging
    before = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING if progress else logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(before)


def _refit(base: FitConfig, best: FitConfig, trial: Any, study: str, splits: Any, cache: FeatureCache,
           metric: str, progress: bool) -> dict[str, Any]:
    """Fit the best config and the base config as runs on the same splits; their validation and test metric."""
    from ..pipeline import fit

    out = {}
    for side, cfg, what in (("best", best, f"trial #{trial.number}"), ("default", base, "base config")):
        r = fit(cfg.updated(name=f"tune-{study}-{side}", overwrite=True), train=splits.train, val=splits.val,
                test=splits.test, progress=progress, cache=cache)
        out[side] = {"what": what, "val": float(r.val_metrics[metric]), "test": float(r.metrics[metric]),
                     "run": str(r.run_dir)}
    out["reproduced"] = abs(out["best"]["val"] - float(trial.value)) <= 1e-9
    return out


def tune(base: FitConfig | str | Path | dict[str, Any], space: SearchSpace | str | Path | dict[str, Any],
         settings: TuneConfig | None = None, *, train: Dataset | None = None, val: Dataset | None = None,
         test: Dataset | None = None, sampler: Any = None, pruner: Any = None, cache: FeatureCache | None = None,
         progress: bool = True, **changes: Any) -> TuneResult:
    """Search ``space`` around ``base`` until the study holds ``trials`` finished trials (or ``timeout``).

    Args:
        base: the fit config (a FitConfig, a YAML path or a dict); its data are loaded once and split once, and
            every trial is fitted on those splits.
        space: the search space (:mod:`transferkit.tuning.space`; a path, a dict or a SearchSpace).
        settings: a :class:`TuneConfig`; ``changes`` (``trials=50, pruner="median"``) override its fields.
        train, val, test: data given in memory instead of the base config's paths (not with ``workers > 1``).
        sampler, pruner: a name (as in TuneConfig) or an Optuna sampler / pruner object (in-process only).
        cache: the feature cache shared by the trials (default: the user cache).
        progress: a progress bar over trials.

    Returns:
        A :class:`TuneResult`; ``runs/tune/NAME/`` holds best.yaml, trials.csv, report.md and the plots.

    Raises:
        ConfigError: a bad space, setting or metric (before any trial); a study of that name started with
            another space or base config; 5 trials failing in a row.
    """
    for key, obj in (("sampler", sampler), ("pruner", pruner)):
        if isinstance(obj, str):
            changes[key] = obj
    sampler, pruner = (None if isinstance(o, str) else o for o in (sampler, pruner))
    base, space = _as_config(base), _as_space(space)
    settings = (settings or TuneConfig()).updated(**changes).validate()
    metric, direction = settings.metric_for(base.task)
    space.check_against(base)
    in_memory = any(d is not None for d in (train, val, test))
    if settings.workers > 1 and (in_memory or base.train is None or sampler is not None or pruner is not None):
        raise ConfigError(f"workers={settings.workers} start processes that load the data themselves: give the data "
                          "as paths in the base config (train/val/test) and the sampler and pruner by name.")
    out_dir = Path(settings.out) if settings.out else Path(base.runs_dir) / "tune" / settings.study
    settings = settings.updated(storage=settings.storage or default_url(out_dir), out=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..pipeline import load_splits

    splits = load_splits(base, train, val, test)
    cache = cache if cache is not None else FeatureCache(engine=base.engine)
    with _optuna_quiet(progress):
        study, objective = session(base, space, settings, splits, cache, 0, sampler, pruner)
        deadline = time.time() + settings.timeout if settings.timeout else None
        _search(study, objective, settings, base, space, out_dir, deadline, progress)
        fail_stale(study)
        found = best_config(study, space, base)
        refit = None
        if settings.refit and found is not None:
            refit = _refit(base, found[1], found[0], settings.study, splits, cache, metric, progress)
    c = counts(study)
    summary = {"study": settings.study, "storage": shown(settings.storage), "sampler": settings.sampler
               if sampler is None else type(sampler).__name__, "pruner": settings.pruner if pruner is None
               else type(pruner).__name__, "metric": metric, "direction": direction, "trials": settings.trials,
               "timeout": settings.timeout,
               "counts": c, "refit": refit, "data_in_config": not in_memory and base.train is not None,
               "data": f"train {len(splits.train)}, validation {len(splits.val)}, test {len(splits.test)}"
                       + (f"; {splits.note}" if splits.note else "")}
    summary = write_results(study, space, base, out_dir, summary)
    best = summary.get("best")
    return TuneResult(settings.study, out_dir, c, best["number"] if best else None, best["value"] if best else None,
                      best["params"] if best else {}, found[1] if found else None, refit, summary)


def _search(study: Any, objective: Any, settings: TuneConfig, base: FitConfig, space: SearchSpace, out_dir: Path,
            deadline: float | None, progress: bool) -> None:
    """Run the trials here (one worker) or in ``settings.workers`` processes, with a progress bar over trials."""
    from tqdm.auto import tqdm

    n = settings.trials
    bar = tqdm(total=n, initial=min(counts(study)["finished"], n), desc=f"tune {settings.study}", unit="trial",
               disable=not progress)

    def update(s: Any = study) -> None:
        c = counts(s)
        bar.n = min(c["finished"], n)
        if c["complete"]:
            bar.set_postfix(best=f"{s.best_value:.4f}", pruned=c["pruned"], failed=c["fail"], refresh=False)
        bar.refresh()

    lock = out_dir / ".trial-slot.lock"
    try:
        if counts(study)["finished"] >= n:  # a re-run of a finished study: nothing to start
            return
        if settings.workers == 1:
            run_trials(study, objective, n, deadline, TrialSlot(lock), on_trial=update)
        else:
            spec = {"base": base.to_dict(), "space": space.to_dict(), "where": space.where,
                    "settings": settings.to_dict(), "deadline": deadline, "lock": str(lock)}
            wait_for(spawn(spec, out_dir, settings.workers), update)
    finally:
        bar.close()
