"""``--strategy auto`` / ``backbone="auto"``: pick what to transfer and how, from a transferability ranking and
the number of labels per class. The rule is small on purpose, so that a run's report can state it as the reason.

This module is the pure decision rule (a ranking and k in, an :class:`AutoChoice` out); running the choice (the
``auto`` strategy, ``backbone="auto"`` in ``fit``) is :mod:`transferkit.strategies.auto`.

The rule (version 1)
--------------------
Inputs: the LogME ranking of the candidate backbones *and* the classical baseline on the training split (every
candidate standardised, see :mod:`transferkit.ranking.rank`), and ``k``, the smallest number of training labels
in any class. ``margin`` = LogME of the best backbone minus LogME of the classical baseline (nats per sample).

1. **Transfer or not.** If no backbone beats the classical baseline (``margin <= 0``), do not transfer:
   for images with ``k >= SCRATCH_MIN_K["image"]`` (5) labels per class, fine-tune a scratch CNN (with that many
   labels a small network trained from scratch beats a linear model on pixels); otherwise fit the classical
   baseline. For text (where TF-IDF is strong and a scratch Transformer needs far more data) the choice is the
   ``hybrid`` strategy on the best-ranked backbone: TF-IDF and the frozen embeddings in one linear model whose
   embedding weight is chosen on validation, with weight 0 (TF-IDF alone, i.e. the baseline) among the options.
   So it can fall back to the baseline, and the run is a normal, loadable one. With few labels
   (``k < MANY_LABELS``) and a pretrained backbone (not ``scratch:``) the choice is ``contrastive`` instead: it
   tunes the encoder's top layers contrastively and then fits the same hybrid head, and the frozen encoder (i.e.
   the ``hybrid`` result) competes on validation as epoch 0, so tuning is kept only where it wins on validation
   (SpamAssassin, MiniLM, k = 8: mean test macro-F1 0.90 over seeds 0-4; seed 0: 0.86, the frozen hybrid 0.76).
2. **How to transfer** the best backbone (``margin > 0``):

   * ``k < FEW_LABELS`` (5): ``lp-ft``: the linear probe is fitted first and competes as epoch 0, so fine-tuning is
     kept only if it beats the probe on validation; with this few labels a plain fine-tune from a random head can
     wreck the features, and a probe alone cannot adapt them.
   * ``FEW_LABELS <= k < MANY_LABELS`` (50) and ``margin >= STRONG_MARGIN`` (0.2): frozen-K fine-tune
     (the bottom half of the layer groups frozen): the features already fit the task well, so adapt only the
     top of the network and keep fewer parameters to overfit.
   * otherwise: ``fine-tune`` (all layers, layer-wise LR decay, early stopping on validation).

When the backbone is fixed (``strategy="auto"`` only), step 1 is skipped: the rule picks the strategy for that
backbone, and the reason says so when the classical baseline ranked above it. When the strategy is fixed
(``backbone="auto"`` only), the best-ranked backbone is used, with a warning when the baseline ranked first.

The thresholds were set with the issue-4 data-efficiency results (MNIST CNN -> digits, ImageNet Lite0 -> digits)
in view; BENCHMARKS.md (section "auto") reports how the rule does on those and on held-out tasks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from .rank import Ranking

FEW_LABELS = 5
MANY_LABELS = 50
STRONG_MARGIN = 0.2
SCRATCH_MIN_K = {"image": 5, "text": None}  # None: never choose a scratch model for this modality
SCRATCH_SPEC = {"image": "scratch:cnn", "text": "scratch:transformer"}
DEFAULT_CANDIDATES = {
    "image": ("packaged:efficientnet_lite0", "packaged:efficientnet_lite1", "packaged:efficientnet_lite2"),
    "text": ("packaged:minilm-l6",),
}
AUTO_STRATEGIES = ("classical", "hybrid", "contrastive", "linear-probe", "lp-ft", "fine-tune", "frozen-k")


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` chose and why. ``backbone`` is None for the classical baseline; ``freeze`` > 0 means
    frozen-K (fine-tune with the bottom ``freeze`` layer groups frozen, set once the backbone's groups are known:
    ``freeze_fraction`` of them)."""

    backbone: str | None
    strategy: str           # classical | hybrid | contrastive | linear-probe | lp-ft | fine-tune | frozen-k
    reason: str
    labels_per_class: int
    margin: float | None
    freeze_fraction: float = 0.0

    @property
    def fit_strategy(self) -> str:
        """The registered strategy that runs this choice (frozen-K is fine-tune with --freeze)."""
        return "fine-tune" if self.strategy == "frozen-k" else self.strategy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_margin(ranking: Ranking, spec: str | None) -> float | None:
    """Score of ``spec`` (default: the best-ranked backbone) minus the classical baseline's; None if either is
    missing or unavailable."""
    base = ranking.baseline
    cand = next((e for e in ranking.entries if e.spec == spec), None) if spec else ranking.best_transfer
    if base is None or cand is None or not base.available or not cand.available:
        return None
    return float(cand.score - base.score)


def transfer_strategy(k: int, margin: float | None) -> tuple[str, float, str]:
    """Step 2 of the rule: (strategy, freeze fraction, reason) for a backbone worth transferring."""
    if k < FEW_LABELS:
        return "lp-ft", 0.0, (f"{k} label(s) per class (< {FEW_LABELS}): LP-FT, whose probe competes as epoch 0, "
                              "so fine-tuning is kept only if it beats the probe on validation")
    if k < MANY_LABELS and margin is not None and margin >= STRONG_MARGIN:
        return "frozen-k", 0.5, (f"{k} labels per class (< {MANY_LABELS}) and features far above the baseline "
                                 f"(LogME margin {margin:+.3f} >= {STRONG_MARGIN}): fine-tune the top half, bottom "
                                 "half of the layer groups frozen")
    return "fine-tune", 0.0, f"{k} labels per class (>= {FEW_LABELS}): fine-tune all layers"


def decide(ranking: Ranking, labels_per_class: int | None = None, choose_backbone: bool = True,
           backbone: str | None = None) -> AutoChoice:
    """Apply the documented rule to a ranking (LogME, with the classical baseline among its entries).

    Args:
        ranking: from :func:`rank_backbones` on the training split.
        labels_per_class: k (default: the ranking's own smallest class count).
        choose_backbone: False when the backbone is fixed (``backbone`` given): only the strategy is chosen.
    """
    k = int(labels_per_class if labels_per_class is not None else ranking.labels_per_class)
    m = ranking.metric
    if not choose_backbone:
        margin = baseline_margin(ranking, backbone)
        strategy, frac, why = transfer_strategy(k, margin)
        warn = ""
        if margin is not None and margin <= 0:
            warn = (f" Warning: the classical baseline ranks above `{backbone}` ({m} margin {margin:+.3f}); "
                    "transfer may not pay here (try `--backbone auto`).")
        return AutoChoice(backbone, strategy, f"backbone fixed to `{backbone}`; {why}.{warn}", k, margin, frac)
    best = ranking.best_transfer
    margin = baseline_margin(ranking, best.spec if best else None)
    if best is None or (margin is not None and margin <= 0):
        base = ranking.baseline
        vs = (f"the classical baseline ({base.note}, {m} {base.score:.4f}) ranks above every backbone"
              + (f" (best: `{best.spec}`, {m} {best.score:.4f}, margin {margin:+.3f})" if best else "")) \
            if base is not None and base.available else "no backbone could be scored"
        min_k = SCRATCH_MIN_K.get(ranking.modality)
        if ranking.modality == "text" and best is not None and k < MANY_LABELS and not best.spec.startswith(
                "scratch:"):
            return AutoChoice(best.spec, "contrastive",
                              f"no clear transfer: {vs}; with {k} labels per class (< {MANY_LABELS}) the "
                              f"`contrastive` strategy tunes the top layers of `{best.spec}` on pairs of texts and "
                              "fits the hybrid head (TF-IDF + embeddings, weight chosen on validation) after each "
                              "epoch; the frozen encoder (the `hybrid` strategy's result) competes as epoch 0, so "
                              "tuning is kept only if it wins on validation.", k, margin)
        if ranking.modality == "text" and best is not None:
            return AutoChoice(best.spec, "hybrid",
                              f"no clear transfer: {vs}; the `hybrid` strategy fits TF-IDF and `{best.spec}` "
                              "embeddings together and chooses their weight on validation (weight 0 = TF-IDF "
                              "alone), so it keeps the baseline's strength and adds the embeddings only if they "
                              "help.", k, margin)
        if min_k is not None and k >= min_k:
            return AutoChoice(SCRATCH_SPEC[ranking.modality], "fine-tune",
                              f"no transfer: {vs}; with {k} labels per class (>= {min_k}) a "
                              f"`{SCRATCH_SPEC[ranking.modality]}` trained from scratch is chosen over the linear "
                              "baseline.", k, margin)
        return AutoChoice(None, "classical", f"no transfer: {vs}; with {k} label(s) per class the classical "
                          "baseline is fitted.", k, margin)
    strategy, frac, why = transfer_strategy(k, margin)
    lead = f"`{best.spec}` ranks first among the backbones ({m} {best.score:.4f}" + (
        f", {margin:+.3f} above the classical baseline)" if margin is not None else ")")
    return AutoChoice(best.spec, strategy, f"{lead}; {why}.", k, margin, frac)


def rank_for_fit(train: Any, candidates: list[Any], image_size: int | None = None, max_length: int | None = None,
                 seed: int = 0, cache: Any = None, progress: bool = False) -> Ranking:
    """LogME ranking of ``candidates`` (specs or built backbones) and the classical baseline on the training split."""
    from .rank import rank_backbones

    return rank_backbones(train, candidates, "logme", image_size=image_size, max_length=max_length, seed=seed,
                          cache=cache, progress=progress)


def parse_candidates(candidates: str | None, modality: str) -> list[str]:
    """``FitConfig.candidates`` (comma-separated specs) or the packaged defaults for the data's modality."""
    if candidates:
        return [s.strip() for s in candidates.split(",") if s.strip()]
    return list(DEFAULT_CANDIDATES[modality])


def decide_backbone(ranking: Ranking, strategy: str) -> AutoChoice:
    """``backbone="auto"`` with a fixed ``strategy`` (not "auto"): the best-ranked backbone takes that strategy,
    even if the classical baseline ranked first (the reason then says so)."""
    best = ranking.best_transfer
    if best is None:
        raise ConfigError("backbone=auto found no candidate it could score; pass --candidates SPEC,SPEC.")
    margin = baseline_margin(ranking, best.spec)
    warn = ""
    if margin is not None and margin <= 0:
        warn = (f" Warning: the classical baseline ranks above every backbone ({ranking.metric} margin "
                f"{margin:+.3f}); transfer may not pay here (try `--strategy auto`).")
    return AutoChoice(best.spec, strategy, f"`{best.spec}` ranks first among the backbones ({ranking.metric} "
                      f"{best.score:.4f}); strategy `{strategy}` was given.{warn}", ranking.labels_per_class,
                      margin)


__all__ = ["AUTO_STRATEGIES", "AutoChoice", "DEFAULT_CANDIDATES", "FEW_LABELS", "MANY_LABELS", "SCRATCH_MIN_K",
           "SCRATCH_SPEC", "STRONG_MARGIN", "baseline_margin", "decide", "decide_backbone", "parse_candidates",
           "rank_for_fit", "transfer_strategy"]
