"""Running ``auto``: rank on the training split, apply the rule of :mod:`transferkit.ranking.auto`, fit the choice.

* ``--strategy auto`` (a fixed backbone) is the registered strategy :func:`fit_auto`;
* ``--backbone auto`` is :func:`choose_for_fit` (called by ``fit`` before the backbone is built) followed by
  :func:`run_choice` once the chosen backbone's :class:`FitContext` exists.

The strategy registry is passed in (``strategies``) rather than imported, so that this module stays below
:mod:`transferkit.strategies`' ``__init__``, which registers :func:`fit_auto`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..ranking import auto as rule
from ..ranking.auto import AutoChoice, parse_candidates, rank_for_fit
from ..ranking.rank import Ranking
from .base import FitContext, StrategyResult


def choose_for_fit(train: Any, candidates: str | None, strategy: str, image_size: int | None = None,
                   max_length: int | None = None, seed: int = 0, cache: Any = None,
                   progress: bool = False) -> tuple[AutoChoice, Ranking]:
    """``backbone="auto"``: rank the candidates on ``train`` and choose. With a fixed ``strategy`` (not "auto"),
    the best backbone takes that strategy even if the baseline ranked first (the reason then says so)."""
    ranking = rank_for_fit(train, parse_candidates(candidates, train.modality), image_size, max_length, seed,
                           cache, progress)
    if strategy == "auto":
        return rule.decide(ranking), ranking
    return rule.decide_backbone(ranking, strategy), ranking


def fit_auto(ctx: FitContext, strategies: Any) -> StrategyResult:
    """The ``auto`` strategy for a given backbone: rank it against the classical baseline on the training split,
    choose linear-probe / LP-FT / fine-tune / frozen-K by the rule, and run that strategy (looked up in
    ``strategies``, the registry). The choice and its reason go into ``details["auto"]`` (and from there into
    the run's report)."""
    c = ctx.config
    ranking = rank_for_fit(ctx.train.ds, [ctx.backbone], c.image_size, c.max_length, c.seed, ctx.cache, ctx.progress)
    choice = rule.decide(ranking, choose_backbone=False, backbone=ctx.backbone.meta.spec)
    return run_choice(ctx, choice, ranking, strategies)


def run_choice(ctx: FitContext, choice: AutoChoice, ranking: Ranking, strategies: Any) -> StrategyResult:
    """Run ``choice``'s strategy on ``ctx`` (frozen-K: set ``freeze`` from the backbone's layer groups).

    Args:
        strategies: the strategy registry (``transferkit.strategies.STRATEGIES``): ``get(name)`` -> fit function.
    """
    freeze = ctx.config.training.freeze
    if choice.freeze_fraction:
        freeze = max(1, int(round(choice.freeze_fraction * len(ctx.backbone.layer_groups()))))
    ctx.config = dataclasses.replace(ctx.config, strategy=choice.fit_strategy,
                                     training=dataclasses.replace(ctx.config.training, freeze=freeze))
    fit_fn: Callable[[FitContext], StrategyResult] = strategies.get(choice.fit_strategy)
    result = fit_fn(ctx)
    result.details["auto"] = {**choice.to_dict(), "freeze": freeze, "ranking": ranking.table(),
                              "ranking_metric": ranking.metric}
    return result


__all__ = ["choose_for_fit", "fit_auto", "run_choice"]
