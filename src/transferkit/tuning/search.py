"""Samplers and pruners by name (Optuna objects, created lazily so that ``transferkit --help`` stays fast).

Defaults follow Optuna's benchmark advice: TPE with Hyperband (``tutorial/10_key_features/003``), a median pruner
for simple comparisons, random search as the baseline.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..registry import Registry

SAMPLERS: Registry[Callable[[int], Any]] = Registry("sampler")
PRUNERS: Registry[Callable[[int | None], Any]] = Registry("pruner")


def optuna_module() -> Any:
    """``optuna``, or a one-line error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("Hyper-parameter search needs Optuna: pip install 'transferkit[tune]' "
                          "(or pip install optuna).") from None
    return optuna


TPE_STARTUP_TRIALS = 5  # random draws before TPE models the space (Optuna's default 10 is most of a short search)


@SAMPLERS.register("tpe", "tree-structured Parzen estimator (Optuna's default; multivariate over groups of "
                          f"parameters drawn together, model from trial {TPE_STARTUP_TRIALS + 1}, constant liar "
                          "for parallel workers)")
def tpe(seed: int) -> Any:
    """Multivariate TPE with ``group=True``: the space is conditional (a probe trial draws no learning rate), and
    grouping models each strategy's parameters jointly instead of falling back to independent draws for every
    parameter that some trials lack."""
    optuna = optuna_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` (since Optuna 2.8)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=TPE_STARTUP_TRIALS,
                                          multivariate=True, group=True)


@SAMPLERS.register("random", "independent uniform draws from the space (the baseline)")
def random(seed: int) -> Any:
    return optuna_module().samplers.RandomSampler(seed=seed)


@PRUNERS.register("hyperband", "Hyperband over epochs (brackets of successive halving)")
def hyperband(max_epochs: int | None) -> Any:
    return optuna_module().pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs or "auto",
                                                   reduction_factor=3)


@PRUNERS.register("median", "stop a trial whose epoch score is below the median of earlier trials at that epoch")
def median(max_epochs: int | None) -> Any:
    return optuna_module().pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


@PRUNERS.register("none", "no pruning: every trial runs all its epochs")
def none(max_epochs: int | None) -> Any:
    return optuna_module().pruners.NopPruner()
