"""Linear probe: frozen (cached) features + a multinomial logistic regression (ridge for regression),
its regularisation chosen on the validation split, folded into one ``nn.Linear`` head."""
from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..baselines.linear import search_grid
from ..engine.model import TransferModel
from .base import FitContext, StrategyResult


def fold_into_linear(head: torch.nn.Linear, coef: np.ndarray, intercept: np.ndarray, scaler: StandardScaler) -> None:
    """Write ``coef @ ((x - mean) / scale) + intercept`` as ``W x + b`` into ``head``."""
    scale = scaler.scale_.astype(np.float64)
    w = coef / scale[None, :]
    b = intercept - w @ scaler.mean_
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))


def robust_scaler(X: np.ndarray) -> StandardScaler:
    """StandardScaler whose scales are floored at 1% of the mean feature scale: features that are almost
    constant on the training set would otherwise be blown up by ~1/scale on new data."""
    sc = StandardScaler().fit(X)
    positive = sc.scale_[sc.scale_ > 1e-12]
    if positive.size:
        sc.scale_ = np.maximum(sc.scale_, 0.01 * float(positive.mean()))
    return sc


def fit_probe(Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, task: str,
              grid: list[float], n_out: int, balanced: bool = False, seed: int = 0):
    """Choose C (or ridge alpha = 1/C) on validation; returns (coef [n_out, D], intercept, scaler, report)."""
    scaler = robust_scaler(Xtr)
    Ztr, Zva = scaler.transform(Xtr), scaler.transform(Xva)
    scores: dict[str, float] = {}
    with threadpool_limits(1, user_api="blas"):  # small problems: 1 BLAS thread is 5-50x faster than 2
        best = search_grid(Ztr, ytr, Zva, yva, task, grid, n_out, balanced=balanced, seed=seed, scores=scores)
    return best.coef, best.intercept, scaler, {"chosen_C": best.C, "val_scores": scores}


def probe_head(ctx: FitContext, model: TransferModel) -> tuple[dict, np.ndarray]:
    """Fit the probe on cached features and write it into ``model``'s final linear layer.

    Returns the probe's report and the validation features it was chosen on."""
    t0 = time.perf_counter()
    bs = max(ctx.config.training.batch_size, 64)
    Xtr = ctx.cache.get_or_compute(ctx.backbone, ctx.train, bs, "extract train", progress=ctx.progress)
    Xva = ctx.cache.get_or_compute(ctx.backbone, ctx.val, bs, "extract val", progress=ctx.progress)
    t1 = time.perf_counter()
    coef, icpt, scaler, report = fit_probe(Xtr, ctx.y_train, Xva, ctx.y_val, ctx.task, ctx.config.probe_grid,
                                           ctx.n_out, ctx.config.class_weights, ctx.config.seed)
    fold_into_linear(model.final_linear(), coef, icpt, scaler)
    report.update(extract_seconds=t1 - t0, probe_seconds=time.perf_counter() - t1,
                  cache_hits=ctx.cache.hits, cache_misses=ctx.cache.misses)
    return report, Xva


def fit_linear_probe(ctx: FitContext) -> StrategyResult:
    model = TransferModel(ctx.backbone, ctx.n_out, "linear")
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    report, Xva = probe_head(ctx, model)
    head = model.final_linear()
    w, b = head.weight.detach().numpy().astype(np.float64), head.bias.detach().numpy().astype(np.float64)
    outputs = {"val": (Xva @ w.T + b).astype(np.float32)}
    if ctx.test is not None:  # the test features go through the same cache
        Xte = ctx.cache.get_or_compute(ctx.backbone, ctx.test, max(ctx.config.training.batch_size, 64), "extract test",
                                       progress=ctx.progress)
        outputs["test"] = (Xte @ w.T + b).astype(np.float32)
        report.update(cache_hits=ctx.cache.hits, cache_misses=ctx.cache.misses)
    return StrategyResult(model.eval(), None, report, outputs)
