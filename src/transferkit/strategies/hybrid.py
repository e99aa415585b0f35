"""Hybrid text head: TF-IDF word 1-2 grams and frozen sentence embeddings, side by side, one logistic model.

The embeddings are robust-scaled and divided by sqrt(dim), then multiplied by a weight ``w`` so that the two
blocks are on a comparable scale; ``w`` and the regularisation ``C`` are chosen together on validation. Measured
on SpamAssassin this early fusion beats both TF-IDF + LR and the embedding probe at small budgets (see
BENCHMARKS.md), because the lexical block carries rare spam tokens and the embedding block generalises across
paraphrases."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from threadpoolctl import threadpool_limits

from ..baselines.linear import full_coef, search_grid
from ..baselines.tfidf import fitted_vectorizer
from ..data.dataset import Dataset
from .linear_probe import robust_scaler

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)  # 0: TF-IDF alone
GRID = (0.1, 1.0, 10.0, 100.0)


@dataclass
class HybridModel:
    """A fitted TF-IDF vectoriser, embedding scaler, block weight and linear model."""

    vectorizer: TfidfVectorizer
    scaler: Any
    weight: float
    model: Any
    task: str
    n_out: int
    details: dict[str, Any] = field(default_factory=dict)

    def design(self, texts: Dataset, features: np.ndarray, weight: float | None = None) -> sp.csr_matrix:
        if len(texts) != len(features):
            raise ValueError(f"{len(texts)} texts but {len(features)} feature rows")
        w = self.weight if weight is None else weight
        z = self.scaler.transform(features) * (w / np.sqrt(features.shape[1]))
        return sp.hstack([self.vectorizer.transform(texts.inputs), sp.csr_matrix(z)]).tocsr()

    def _outputs(self, x: sp.csr_matrix, model: Any) -> np.ndarray:
        coef, icpt = full_coef(model, self.task, self.n_out)
        return np.asarray(x @ coef.T + icpt)

    def outputs(self, texts: Dataset, features: np.ndarray) -> np.ndarray:
        """Logits (classification) or the standardised target (regression)."""
        return self._outputs(self.design(texts, features), self.model)


def fit_hybrid(train: Dataset, f_train: np.ndarray, y_train: np.ndarray, val: Dataset, f_val: np.ndarray,
               y_val: np.ndarray, task: str, n_out: int, seed: int = 0, class_weights: bool = False,
               weights: tuple[float, ...] = WEIGHTS, grid: tuple[float, ...] = GRID) -> HybridModel:
    """Fit on ``train``; choose the embedding weight and C together on ``val``."""
    if train.modality != "text":
        raise ValueError("the hybrid head combines TF-IDF with embeddings and needs text data")
    vec = fitted_vectorizer(train.inputs)
    m = HybridModel(vec, robust_scaler(f_train), 1.0, None, task, n_out)
    scores: dict[str, float] = {}
    best = None
    with threadpool_limits(1, user_api="blas"):
        for w in weights:
            choice = search_grid(m.design(train, f_train, w), y_train, m.design(val, f_val, w), y_val, task, grid,
                                 n_out, balanced=class_weights, seed=seed, max_iter=2000, scores=scores,
                                 key=f"w={w:g},C={{C:g}}")
            if best is None or choice.score > best[0]:
                best = (choice.score, w, choice.C, choice.estimator)
    m.weight, m.model = best[1], best[3]
    m.details = {"weight": best[1], "chosen_C": best[2], "val_scores": scores,
                 "features": f"tfidf word 1-2 grams ({len(vec.vocabulary_)} terms) + {f_train.shape[1]}-d embeddings"}
    return m


def fit_hybrid_strategy(ctx):
    """The ``hybrid`` fit strategy: frozen backbone embeddings + TF-IDF in one linear model. The embedding block
    is folded into the model's linear head and the TF-IDF block becomes its lexical branch, so the saved run
    predicts like any other."""
    import time

    from ..errors import ConfigError

    if ctx.train.is_image:
        raise ConfigError("Strategy 'hybrid' combines TF-IDF with embeddings and needs text data; "
                          "use linear-probe, lp-ft or fine-tune for images.")
    t0 = time.perf_counter()
    bs = max(ctx.config.training.batch_size, 64)
    f_tr = ctx.cache.get_or_compute(ctx.backbone, ctx.train, bs, "extract train", progress=ctx.progress)
    f_va = ctx.cache.get_or_compute(ctx.backbone, ctx.val, bs, "extract val", progress=ctx.progress)
    t1 = time.perf_counter()

    def test_features():
        return ctx.cache.get_or_compute(ctx.backbone, ctx.test, bs, "extract test", progress=ctx.progress)

    result = hybrid_result(ctx, f_tr, f_va, test_features)
    for p in result.model.backbone.parameters():
        p.requires_grad_(False)
    result.details.update(extract_seconds=t1 - t0, fit_seconds=time.perf_counter() - t1,
                          cache_hits=ctx.cache.hits, cache_misses=ctx.cache.misses)
    return result


def hybrid_result(ctx, f_tr: np.ndarray, f_va: np.ndarray, test_features=None, head: HybridModel | None = None):
    """Fit the hybrid head on ``ctx``'s texts and the embeddings ``f_tr`` / ``f_va`` of ``ctx.backbone`` (frozen or
    tuned: the ``contrastive`` strategy passes its tuned encoder's) and fold it into a ``TransferModel`` on that
    backbone: the embedding block becomes the linear head, the TF-IDF block the lexical branch.

    Args:
        test_features: a callable giving the test embeddings (called only when ``ctx.test`` is set), so that the
            result carries the test outputs too.
        head: an already fitted head on these features (skips the fit).

    Returns:
        A ``StrategyResult`` with the model in eval mode, the head's details and its val (/ test) outputs.
    """
    import torch

    from ..engine.lexical import LexicalBranch
    from ..engine.model import TransferModel
    from .base import StrategyResult

    h = head or fit_hybrid(ctx.train.ds, f_tr, ctx.y_train, ctx.val.ds, f_va, ctx.y_val, ctx.task, ctx.n_out,
                           ctx.config.seed, ctx.config.class_weights)
    v = len(h.vectorizer.vocabulary_)
    coef, icpt = full_coef(h.model, ctx.task, ctx.n_out)
    # embedding block: logits += (w / sqrt(d)) * ((f - center) / scale) @ C_e.T  -> one nn.Linear on f
    d = f_tr.shape[1]
    center, scale = h.scaler.mean_, h.scaler.scale_
    ce = coef[:, v:] * (h.weight / np.sqrt(d)) / scale
    model = TransferModel(ctx.backbone, ctx.n_out, "linear")
    lin = model.final_linear()
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(ce, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(icpt - ce @ center, dtype=torch.float32))
    model.lexical = LexicalBranch.from_vectorizer(h.vectorizer, coef[:, :v])  # runs inside model.forward
    outputs = {"val": h.outputs(ctx.val.ds, f_va).astype(np.float32)}
    if ctx.test is not None and test_features is not None:
        outputs["test"] = h.outputs(ctx.test.ds, test_features()).astype(np.float32)
    return StrategyResult(model.eval(), None, dict(h.details), outputs)
