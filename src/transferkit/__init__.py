"""transferkit: transfer learning for images and text, with honest evaluation."""
from __future__ import annotations

from ._version import __version__

from typing import TYPE_CHECKING, Any

# (the adaptation entry point is ``transferkit.adapt.adapt``: ``adapt`` is the subpackage's name)
__all__ = ["AdaptConfig", "FitConfig", "PretrainConfig", "StudyConfig", "TransferClassifier", "TransferRegressor",
           "compare", "create_backbone", "fit", "load_run", "pretrain", "rank_backbones", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .backbones import create_backbone
    from .config import FitConfig
    from .estimators import TransferClassifier, TransferRegressor
    from .pipeline import fit
    from .pretraining import PretrainConfig, pretrain
    from .runs import load_run


def __getattr__(name: str) -> Any:  # lazy: keep `transferkit --help` fast
    if name == "FitConfig":
        from .config import FitConfig

        return FitConfig
    if name in ("TransferClassifier", "TransferRegressor"):
        from . import estimators

        return getattr(estimators, name)
    if name == "create_backbone":
        from .backbones import create_backbone

        return create_backbone
    if name == "fit":
        from .pipeline import fit

        return fit
    if name == "AdaptConfig":
        import importlib

        return importlib.import_module(f"{__name__}.adapt").AdaptConfig
    if name in ("pretrain", "PretrainConfig"):  # the subpackage is ``pretraining``, so ``pretrain`` stays the function
        from . import pretraining

        return getattr(pretraining, name)
    if name == "rank_backbones":
        from .ranking import rank_backbones

        return rank_backbones
    if name in ("compare", "StudyConfig"):
        from . import study

        return getattr(study, name)
    if name == "load_run":
        from .runs import load_run

        return load_run
    raise AttributeError(name)
