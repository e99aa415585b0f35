"""Linear probe: frozen (cached) features + a multinomial logistic regression (ridge for regression),
its regularisation chosen on the validation split, folded into one ``nn.Linear`` head."""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..engine.loop import validation_score
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
        _, C, coef, icpt = _grid(Ztr, ytr, Zva, yva, task, grid, n_out, balanced, seed, scores)
    return coef, icpt, scaler, {"chosen_C": C, "val_scores": scores}


def _grid(Ztr, ytr, Zva, yva, task, grid, n_out, balanced, seed, scores):
    """Fit one model per C; record each validation score in ``scores``; return the best (score, C, coef, b)."""
    best = None
    for C in grid:
        if task == "regression":
            m = Ridge(alpha=1.0 / C).fit(Ztr, ytr)
            coef, icpt = m.coef_.reshape(1, -1), np.atleast_1d(m.intercept_)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                m = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if balanced else None,
                                       random_state=seed).fit(Ztr, ytr)
            coef, icpt = _full_coef(m, n_out)
        val_out = Zva @ coef.T + icpt
        s = validation_score(val_out, yva, task)
        scores[f"{C:g}"] = s
        if best is None or s > best[0]:
            best = (s, C, coef, icpt)
    return best


def _full_coef(m: LogisticRegression, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Map sklearn's coefficients onto all ``n_out`` classes (binary -> two logits; absent classes -> -inf-ish)."""
    d = m.coef_.shape[1]
    coef, icpt = np.zeros((n_out, d)), np.full(n_out, -1e4)
    cls = m.classes_.astype(int)
    if len(cls) == 2 and m.coef_.shape[0] == 1:
        coef[cls[1]], icpt[cls[1]] = m.coef_[0], m.intercept_[0]
        coef[cls[0]], icpt[cls[0]] = 0.0, 0.0
    else:
        coef[cls], icpt[cls] = m.coef_, m.intercept_
    return coef, icpt


def probe_head(ctx: FitContext, model: TransferModel) -> dict:
    """Fit the probe on cached features and write it into ``model``'s final linear layer."""
    t0 = time.perf_counter()
    bs = max(ctx.config.batch_size, 64)
    Xtr = ctx.cache.get_or_compute(ctx.backbone, ctx.train, bs, "extract train", progress=ctx.progress)
    Xva = ctx.cache.get_or_compute(ctx.backbone, ctx.val, bs, "extract val", progress=ctx.progress)
    t1 = time.perf_counter()
    coef, icpt, scaler, report = fit_probe(Xtr, ctx.y_train, Xva, ctx.y_val, ctx.task, ctx.config.probe_grid,
                                           ctx.n_out, ctx.config.class_weights, ctx.config.seed)
    fold_into_linear(model.final_linear(), coef, icpt, scaler)
    report["_val_features"] = Xva
    report.update(extract_seconds=t1 - t0, probe_seconds=time.perf_counter() - t1,
                  cache_hits=ctx.cache.hits, cache_misses=ctx.cache.misses)
    return report


def fit_linear_probe(ctx: FitContext) -> StrategyResult:
    model = TransferModel(ctx.backbone, ctx.n_out, "linear")
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    report = probe_head(ctx, model)
    head = model.final_linear()
    w, b = head.weight.detach().numpy().astype(np.float64), head.bias.detach().numpy().astype(np.float64)
    outputs = {"val": (report.pop("_val_features") @ w.T + b).astype(np.float32)}
    if ctx.test is not None:  # the test features go through the same cache
        Xte = ctx.cache.get_or_compute(ctx.backbone, ctx.test, max(ctx.config.batch_size, 64), "extract test",
                                       progress=ctx.progress)
        outputs["test"] = (Xte @ w.T + b).astype(np.float32)
        report.update(cache_hits=ctx.cache.hits, cache_misses=ctx.cache.misses)
    return StrategyResult(model.eval(), None, report, outputs)
