"""Strategies: how a backbone is adapted to the target task."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from ..baselines import classical_spec
from ..config import LoraConfig, TrainConfig
from ..features.cache import FeatureCache  # re-exported: the public name transferkit.strategies.FeatureCache
from ..registry import Registry
from .base import FitContext, StrategyResult
from .baseline import fit_classical_strategy
from .finetune import fit_fine_tune, fit_lp_ft
from .linear_probe import fit_linear_probe

STRATEGIES: Registry[Callable[[FitContext], StrategyResult]] = Registry("strategy", " See `transferkit info`.")
STRATEGIES.register("linear-probe", "frozen backbone, cached features, logistic/ridge head tuned on validation")(
    fit_linear_probe)
STRATEGIES.register("fine-tune", "train all layers (or all but the bottom --freeze K groups), LLRD, early stop")(
    fit_fine_tune)
STRATEGIES.register("lp-ft", "linear probe first, then fine-tune from that head (Kumar et al., 2022)")(fit_lp_ft)


STRATEGIES.register("classical", "no transfer: pixels / TF-IDF + logistic (ridge) regression, C tuned on "
                    "validation; uses backbone classical:pixels / classical:tfidf")(fit_classical_strategy)


def _fit_hybrid(ctx: FitContext) -> StrategyResult:
    from .hybrid import fit_hybrid_strategy

    return fit_hybrid_strategy(ctx)


STRATEGIES.register("hybrid", "text: TF-IDF 1-2 grams + frozen embeddings in one linear model, tuned on validation")(
    _fit_hybrid)


def _fit_contrastive(ctx: FitContext) -> StrategyResult:
    from .contrastive import fit_contrastive

    return fit_contrastive(ctx)


STRATEGIES.register("contrastive", "text, few labels: SetFit-style contrastive tuning of the encoder's top layers on "
                    "all pairs of a batch, then the hybrid head; epochs chosen on validation")(_fit_contrastive)


def _fit_lora(ctx: FitContext) -> StrategyResult:
    from .lora import fit_lora

    return fit_lora(ctx)


STRATEGIES.register("lora", "low-rank adapters (PEFT) on the backbone's attention / conv layers + the head; saved "
                    "merged, so the run needs no PEFT (--lora-r, --lora-targets; extra: transferkit[lora])")(_fit_lora)


def _fit_auto(ctx: FitContext) -> StrategyResult:
    from .auto import fit_auto

    return fit_auto(ctx, STRATEGIES)


STRATEGIES.register("auto", "choose linear-probe / lp-ft / fine-tune / frozen-K from LogME and labels per class")(
    _fit_auto)



@dataclass(frozen=True)
class StrategyTraits:
    """What callers (``fit``, the study) need to know about a registered strategy besides its fit function."""

    own_backbone: Callable[[str], str] | None = None  # fits its own featuriser: data modality -> backbone spec
    frozen_features: bool = False  # reads only frozen features of ctx.backbone (via ctx.cache): shareable
    modalities: tuple[str, ...] = ("image", "text")
    chooser: bool = False  # chooses and runs another registered strategy
    in_default_study: bool = True  # a column of `compare` studies that name no strategies
    reads: frozenset[str] | None = None  # the SETTING_GROUPS it reads (None: all of them, the safe default)


# Settings that only some strategies read, by group; a field in no group (backbone, image_size, class_weights ...)
# matters to every strategy. The search (`transferkit tune`) samples a field only where the trial's strategy reads
# it, so that two trials differing only in settings their strategy ignores count as one config.
SETTING_GROUPS: dict[str, tuple[str, ...]] = {
    "training": tuple(f.name for f in fields(TrainConfig)),
    "lora": tuple(f.name for f in fields(LoraConfig)),
    "probe_grid": ("probe_grid",),
    "head": ("head",),
    "backbone": ("backbone", "candidates", "pooling", "engine"),
}
_WITH_BACKBONE = frozenset({"backbone"})

TRAITS: dict[str, StrategyTraits] = {
    "classical": StrategyTraits(own_backbone=classical_spec, reads=frozenset()),
    "linear-probe": StrategyTraits(frozen_features=True, reads=_WITH_BACKBONE | {"probe_grid"}),
    "hybrid": StrategyTraits(frozen_features=True, modalities=("text",), reads=_WITH_BACKBONE),
    "fine-tune": StrategyTraits(reads=_WITH_BACKBONE | {"training", "head"}),
    "lp-ft": StrategyTraits(reads=_WITH_BACKBONE | {"training", "probe_grid"}),
    "contrastive": StrategyTraits(modalities=("text",), reads=_WITH_BACKBONE | {"training"}),
    "auto": StrategyTraits(chooser=True),
    # needs the lora extra (PEFT); asked for by name
    "lora": StrategyTraits(in_default_study=False, reads=_WITH_BACKBONE | {"training", "lora", "head"}),
}


def traits(name: str) -> StrategyTraits:
    """The traits of registered strategy ``name`` (``ConfigError`` with a suggestion for an unknown name)."""
    STRATEGIES.get(name)
    return TRAITS.get(name, StrategyTraits())


def unread_settings(name: str) -> frozenset[str]:
    """The flat FitConfig fields that strategy ``name`` never reads (empty for a strategy that reads all)."""
    reads = traits(name).reads
    if reads is None:
        return frozenset()
    return frozenset(f for group, names in SETTING_GROUPS.items() if group not in reads for f in names)


__all__ = ["SETTING_GROUPS", "STRATEGIES", "TRAITS", "FitContext", "StrategyResult", "StrategyTraits", "FeatureCache",
           "traits", "unread_settings"]
