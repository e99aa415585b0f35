"""Strategies: how a backbone is adapted to the target task."""
from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry
from .base import FitContext, StrategyResult
from .feature_cache import FeatureCache
from .finetune import fit_fine_tune, fit_lp_ft
from .linear_probe import fit_linear_probe

STRATEGIES: Registry[Callable[[FitContext], StrategyResult]] = Registry("strategy", " See `transferkit info`.")
STRATEGIES.register("linear-probe", "frozen backbone, cached features, logistic/ridge head tuned on validation")(
    fit_linear_probe)
STRATEGIES.register("fine-tune", "train all layers (or all but the bottom --freeze K groups), LLRD, early stop")(
    fit_fine_tune)
STRATEGIES.register("lp-ft", "linear probe first, then fine-tune from that head (Kumar et al., 2022)")(fit_lp_ft)


def _fit_hybrid(ctx: FitContext) -> StrategyResult:
    from .hybrid import fit_hybrid_strategy

    return fit_hybrid_strategy(ctx)


STRATEGIES.register("hybrid", "text: TF-IDF 1-2 grams + frozen embeddings in one linear model, tuned on validation")(
    _fit_hybrid)


def _fit_auto(ctx: FitContext) -> StrategyResult:
    from ..ranking.auto import fit_auto

    return fit_auto(ctx)


STRATEGIES.register("auto", "choose linear-probe / lp-ft / fine-tune / frozen-K from LogME and labels per class")(
    _fit_auto)

__all__ = ["STRATEGIES", "FitContext", "StrategyResult", "FeatureCache"]
