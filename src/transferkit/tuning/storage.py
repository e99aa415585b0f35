"""Where a study lives: an Optuna RDB storage (SQLite by default, PostgreSQL by URL) with heartbeats, so that the
trials of a killed tuner are marked FAIL; creating or continuing a study whose space and base config must match."""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .search import optuna_module

STUDY_ATTR = "transferkit"  # the study's user attribute: what defines it (space, base config, metric)


def default_url(out_dir: Path) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def shown(url: str) -> str:
    """``url`` with any password hidden (for reports and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse is reported as it is by open_storage
        return url


def with_driver(url: str) -> str:
    """A bare ``postgresql://`` URL with the PostgreSQL driver that is installed: SQLAlchemy 2.1 reads it as
    psycopg (3), older versions as psycopg2; either one works."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for module, dialect in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return url.replace("postgresql://", f"postgresql+{dialect}://", 1)
    return url


def open_storage(url: str, heartbeat: int) -> Any:
    """An ``RDBStorage`` with a heartbeat every ``heartbeat`` s and a grace period of 3x that."""
    optuna = optuna_module()
    url = with_driver(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}  # several workers write the same file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                              grace_period=3 * heartbeat)
    except ImportError as e:
        raise ConfigError(f"Storage '{shown(url)}' needs a database driver that is not installed ({e}); for "
                          "PostgreSQL: pip install psycopg2-binary.") from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's many connection errors: one line naming the URL
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"Cannot open the study storage '{shown(url)}': {first}") from None


def identity(space: Any, base: Any, metric: str, direction: str) -> dict[str, Any]:
    """What defines a study: a re-run must match it to continue the study."""
    from ..config import RUN_PLACEMENT

    cfg = {k: v for k, v in base.to_dict().items() if k not in RUN_PLACEMENT}
    return json.loads(json.dumps({"space": space.to_dict(), "base": cfg, "metric": metric, "direction": direction},
                                 default=str))


def open_study(storage: Any, name: str, sampler: Any, pruner: Any, ident: dict[str, Any] | None) -> Any:
    """Create study ``name`` or continue it (``load_if_exists``). With ``ident`` the study must have been started
    with the same space, base config and metric; ``None`` loads it as it is (a worker)."""
    optuna = optuna_module()
    direction = ident["direction"] if ident else None
    if ident is None:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                direction=direction, load_if_exists=True)
    saved = study.user_attrs.get(STUDY_ATTR)
    if saved is None:
        study.set_user_attr(STUDY_ATTR, ident)
    elif saved != ident:
        diff = [k for k in ("space", "metric", "direction") if saved.get(k) != ident.get(k)]
        base = saved.get("base", {})
        diff += [f"base config '{k}'" for k in sorted(set(base) | set(ident["base"]))
                 if base.get(k) != ident["base"].get(k)]
        raise ConfigError(f"Study '{name}' was started with another {', '.join(diff) or 'setup'}; continue it with "
                          "the same config and space, or start a new one with --study NAME.")
    return study


def fail_stale(study: Any) -> None:
    """Mark as FAIL the running trials whose heartbeat stopped (their tuner was killed)."""
    optuna = optuna_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


REPEAT_ATTR = "repeats"  # user attribute of a proposal skipped as a repeat: the number of the trial it repeats


def is_repeat(trial: Any) -> bool:
    """A FAIL trial that was never fitted: its parameters repeated an earlier trial's."""
    return trial.state.name == "FAIL" and REPEAT_ATTR in trial.user_attrs


def counts(study: Any) -> dict[str, int]:
    """Trials by state: ``complete``, ``pruned``, ``fail``, ``running``, ``waiting``; ``finished`` = complete +
    pruned (what ``trials`` counts); ``repeated``: proposals skipped because an earlier trial had fitted the same
    config (stored as FAIL, not counted in ``fail``)."""
    trials = study.get_trials(deepcopy=False)
    c = Counter("repeated" if is_repeat(t) else t.state.name.lower() for t in trials)
    out = {k: c.get(k, 0) for k in ("complete", "pruned", "fail", "running", "waiting", "repeated")}
    out["finished"] = out["complete"] + out["pruned"]
    return out
