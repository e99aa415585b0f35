"""The ``classical`` strategy: the non-transfer baseline fitted as an ordinary model (no pretrained backbone).

The backbone is an unfitted ``classical:`` featuriser (``classical:pixels`` for images, ``classical:tfidf`` for
text; ``pipeline.fit`` picks it for the data); this strategy fits it on the training split, chooses the linear
model's C on validation (:func:`transferkit.baselines.fit_classical`) and returns ``head(featuriser(x))``.
"""
from __future__ import annotations

import time

from ..baselines import fit_classical
from .base import FitContext, StrategyResult


def fit_classical_strategy(ctx: FitContext) -> StrategyResult:
    """Fit the classical baseline on ``ctx``'s splits; its outputs on val / test come from scikit-learn."""
    t0 = time.perf_counter()
    m = fit_classical(ctx.train.ds, ctx.y_train, ctx.val.ds, ctx.y_val, ctx.task, ctx.n_out, ctx.config.seed,
                      featuriser=ctx.backbone)
    outputs = {"val": m.outputs(ctx.val.ds)}
    if ctx.test is not None:
        outputs["test"] = m.outputs(ctx.test.ds)
    details = {"classical": m.details, "fit_seconds": time.perf_counter() - t0}
    return StrategyResult(m.to_model(), None, details, outputs)


__all__ = ["fit_classical_strategy"]
