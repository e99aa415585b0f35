"""Rank candidate backbones (and the no-transfer baseline) on labelled target data by a transferability score
computed from frozen, cached features; ``transferkit rank`` is a thin wrapper around :func:`rank_backbones`.

Every candidate is scored on the features its linear model would see: backbone features standardised (as the
linear probe does), the classical baseline's standardised pixels or raw TF-IDF. LEEP and NCE use the source
classifier head (a pretrained backbone's own classifier, or the head of the run a ``run:`` backbone came from)
and are reported as unavailable where there is none.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..errors import ConfigError, DataError, suggest
from .scores import FEATURE_SCORES, METRICS, SOURCE_SCORES, knn_loo, softmax

BASELINE = "classical"
METRIC_HELP = {
    "logme": "LogME, log maximum evidence of a Bayesian linear model on the features (You et al., 2021)",
    "leep": "LEEP, log expected empirical prediction through the source head (Nguyen et al., 2020)",
    "nce": "NCE, negative conditional entropy of labels given source-head labels (Tran et al., 2019)",
    "hscore": "H-score with shrinkage, tr(cov(f)^-1 cov(E[f|y])) (Bao et al., 2019)",
    "knn": "k-NN (k=5) leave-one-out accuracy on the features, a simple reference",
}


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's scores on the target data. ``score`` is the ranking metric (None = unavailable)."""

    spec: str
    score: float | None
    scores: dict[str, float | None]
    seconds: float
    feature_dim: int
    baseline: bool = False
    note: str = ""

    @property
    def available(self) -> bool:
        return self.score is not None


@dataclass(frozen=True)
class Ranking:
    """Candidates best first (unavailable ones last), with what the ranking was computed on."""

    metric: str
    entries: tuple[CandidateScore, ...]
    n_samples: int
    n_classes: int
    labels_per_class: int
    modality: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def best(self) -> CandidateScore | None:
        return self.entries[0] if self.entries and self.entries[0].available else None

    @property
    def best_transfer(self) -> CandidateScore | None:
        return next((e for e in self.entries if e.available and not e.baseline), None)

    @property
    def baseline(self) -> CandidateScore | None:
        return next((e for e in self.entries if e.baseline), None)

    def position(self, spec: str) -> int | None:
        """1-based rank of ``spec`` among the available candidates."""
        avail = [e.spec for e in self.entries if e.available]
        return avail.index(spec) + 1 if spec in avail else None

    def recommendation(self) -> str:
        best, transfer, base = self.best, self.best_transfer, self.baseline
        m = self.metric
        if best is None:
            why = self.entries[0].note if self.entries else "none given"
            return (f"No candidate could be scored with {m} ({why}); "
                    "use --metric logme, which needs features only.")
        if best.baseline:
            vs = f" vs {transfer.spec} {transfer.score:.4f}" if transfer else ""
            return (f"WARNING: the classical baseline ({best.note}) ranks first ({m} {best.score:.4f}{vs}): transfer "
                    "from these candidates is unlikely to pay on this data. Fit the baseline, or confirm with "
                    "`transferkit compare`.")
        avail = [e for e in self.entries if e.available]
        nxt = f"; next: {avail[1].spec} {avail[1].score:.4f}" if len(avail) > 1 else ""
        text = f"Recommended: {best.spec} ({m} {best.score:.4f}{nxt})."
        if base is not None and base.available:
            text += f" The classical baseline ranks {self.position(base.spec)} of {len(avail)}."
        elif base is not None:
            text += f" The classical baseline has no {m} ({base.note}); compare with --metric logme."
        return text

    def table(self) -> list[str]:
        """A Markdown table: rank, candidate, score, every other computed metric, time, feature dim."""
        others = [k for k in METRICS if k != self.metric and any(k in e.scores for e in self.entries)]
        head = ["rank", "candidate", self.metric, *others, "time (s)", "feature dim", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        pos = 0
        for e in self.entries:
            pos += e.available
            cells = [str(pos) if e.available else "-", e.spec + (" (no transfer)" if e.baseline else ""),
                     _fmt(e.score), *(_fmt(e.scores.get(k)) for k in others), f"{e.seconds:.1f}",
                     str(e.feature_dim), e.note]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recommendation"] = self.recommendation()
        return d


def _fmt(v: float | None) -> str:
    return "unavailable" if v is None else f"{v:.4f}"


def _check_metrics(metric: str, metrics: Sequence[str]) -> list[str]:
    wanted = [metric, *[m for m in metrics if m != metric]]
    for m in wanted:
        if m not in METRICS:
            raise ConfigError(f"Unknown transferability metric '{m}'.{suggest(m, METRICS)} "
                              f"Choose from {', '.join(METRICS)}.")
    return wanted


def _subsample(y: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """Stratified subset of at most ``max_samples`` indices (all, in order, when None or enough)."""
    n = len(y)
    if not max_samples or n <= max_samples:
        return np.arange(n)
    from ..data.splits import stratified_split

    frac = 1.0 - max_samples / n
    keep, _ = stratified_split(y, (frac,), seed, True)
    return np.sort(keep)


def standardise(feats: np.ndarray) -> np.ndarray:
    """Centre and scale each feature, as the linear probe does before its logistic regression (scales floored at
    1% of the mean scale). Backbone features are scored in this form, the footing the classical pixels are on."""
    f = np.asarray(feats, dtype=np.float64)
    sd = f.std(axis=0)
    positive = sd[sd > 1e-12]
    floor = 0.01 * float(positive.mean()) if positive.size else 1.0
    return (f - f.mean(axis=0)) / np.maximum(sd, floor)


def score_features(wanted: Sequence[str], feats: np.ndarray, probs: np.ndarray | None,
                   y: np.ndarray) -> dict[str, float | None]:
    """Every metric in ``wanted`` for prepared features (see :func:`standardise`) and optional source-head
    probabilities; source-head metrics are None without them."""
    out: dict[str, float | None] = {}
    for m in wanted:
        if m == "knn":  # features arrive prepared (standardised, or raw TF-IDF)
            out[m] = float(knn_loo(feats, y, standardise=False))
        elif m in FEATURE_SCORES:
            out[m] = float(FEATURE_SCORES[m](feats, y))
        else:
            out[m] = None if probs is None else float(SOURCE_SCORES[m](probs, y))
    return out


def _source_probs(spec: str, backbone: Any, inputs: Any, feats: np.ndarray, cache: Any, batch_size: int,
                  progress: bool) -> tuple[np.ndarray | None, str]:
    """Source-head probabilities: a pretrained classifier kept by the backbone on its inputs
    (``Backbone.source_logits``, e.g. ImageNet logits, cached like features), or a head on its features
    (``Backbone.head_logits``: a ``run:`` backbone's parent-run head). (None, why) when there is none."""
    if backbone.meta.source_classes:
        logits = cache.get_or_compute(backbone, inputs, batch_size, f"source head {spec}", source_logits=True,
                                      progress=progress)
        return softmax(logits), f"source head: {backbone.meta.source_classes} classes"
    import torch

    head_logits = getattr(backbone, "head_logits", None)  # the Backbone protocol's; absent on duck-typed ones
    head = head_logits(torch.as_tensor(feats, dtype=torch.float32)) if head_logits is not None else None
    if head is not None:
        logits = head.double().numpy()
        return softmax(logits), f"source head: {backbone.meta.source}'s {logits.shape[1]}-class head"
    return None, "no source classifier head"


def rank_backbones(data: Dataset, candidates: Sequence[Any], metric: str = "logme", *,
                   metrics: Sequence[str] = (), baseline: bool = True, image_size: int | None = None,
                   max_length: int | None = None, max_samples: int | None = None, batch_size: int = 64,
                   seed: int = 0, cache: Any = None, progress: bool = False) -> Ranking:
    """Score every candidate backbone (and the classical baseline) on labelled target data.

    Args:
        data: labelled classification data (images or texts).
        candidates: backbone specs, e.g. ``["packaged:efficientnet_lite0", "scratch:cnn"]``, or ``Backbone``
            objects already built.
        metric: the ranking score: logme | leep | nce | hscore | knn.
        metrics: further scores to compute for the table.
        baseline: also score the classical no-transfer baseline (pixels / TF-IDF).
        max_samples: score a stratified subset of at most this many examples (seeded).
        cache: a ``FeatureCache`` (default: the on-disk cache), so a second ranking costs look-ups only.
    Returns:
        A :class:`Ranking`, best first.
    Raises:
        ConfigError: unknown metric or backbone spec, no candidates, or a backbone of the wrong modality.
        DataError: unlabelled data or fewer than 2 classes.
    """
    from ..backbones import create_backbone, parse_spec
    from ..baselines.classical import classical_features
    from ..data.labels import LabelMap
    from ..features import FeatureCache, Inputs

    wanted = _check_metrics(metric, metrics)
    items = [c.strip() if isinstance(c, str) else c for c in candidates if not isinstance(c, str) or c.strip()]
    if not items and not baseline:
        raise ConfigError("Give at least one candidate backbone, e.g. "
                          "--backbones packaged:efficientnet_lite0,scratch:cnn.")
    for c in items:
        if isinstance(c, str):
            parse_spec(c)
    if data.y is None:
        raise DataError(f"Ranking needs labelled data; '{data.origin}' has no labels (check --label-column).")
    lm = LabelMap.fit(data.y)
    if len(lm) < 2:
        raise DataError(f"Data '{data.origin}' has only one class ({lm.classes[0]!r}); ranking needs at least 2.")
    idx = _subsample(np.asarray([str(v) for v in data.y]), max_samples, seed)
    ds = data.subset(idx) if len(idx) < len(data) else data
    y = lm.encode(ds.y)
    counts = np.bincount(y, minlength=len(lm))
    cache = cache if cache is not None else FeatureCache()
    entries = []
    for cand in items:
        t0 = time.perf_counter()
        if isinstance(cand, str):
            bb = create_backbone(cand, pretrained=True, image_size=image_size, max_length=max_length,
                                 seed=seed if cand.startswith("scratch:") else None)
        else:
            bb = cand
        spec = bb.meta.spec
        if bb.meta.modality != ds.modality:
            raise ConfigError(f"Backbone '{spec}' takes {bb.meta.modality}s but the data '{ds.origin}' are "
                              f"{ds.modality}s. Choose candidates of one modality (see `transferkit info`).")
        inputs = Inputs(ds, bb)
        feats = cache.get_or_compute(bb, inputs, batch_size, f"features {spec}", progress=progress)
        probs, note = (None, "")
        if any(m in SOURCE_SCORES for m in wanted):
            probs, note = _source_probs(spec, bb, inputs, feats, cache, batch_size, progress)
        scores = score_features(wanted, standardise(feats), probs, y)
        entries.append(CandidateScore(spec, scores[metric], scores, time.perf_counter() - t0, bb.meta.feature_dim,
                                      note=note))
    if baseline:
        t0 = time.perf_counter()
        feats, dim, desc = classical_features(ds)
        scores = score_features(wanted, feats, None, y)
        note = desc if scores[metric] is not None else f"{desc}; no source classifier head"
        entries.append(CandidateScore(BASELINE, scores[metric], scores, time.perf_counter() - t0, dim, True, note))
    entries.sort(key=lambda e: (not e.available, -(e.score if e.available else 0.0)))
    notes = []
    if len(ds) < len(data):
        notes.append(f"scored on a stratified subset of {len(ds)} of {len(data)} examples (seed {seed})")
    return Ranking(metric, tuple(entries), len(ds), len(lm), int(counts.min()), ds.modality, tuple(notes))


__all__ = ["BASELINE", "CandidateScore", "METRIC_HELP", "Ranking", "rank_backbones",
           "score_features", "standardise"]
