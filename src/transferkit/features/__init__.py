"""Model inputs, frozen feature extraction, extraction runtimes (engines) and the on-disk feature cache.

Below ``strategies``, ``ranking``, ``runs`` and ``adapt``, above ``backbones`` and ``data``:

* :mod:`.inputs`: dataset indices -> model-ready batches (``Inputs``);
* :mod:`.runtimes`: eager / compiled / ONNX engines that run a backbone for inference (``ENGINES``);
* :mod:`.extract`: features [N, D] in dataset order (``extract_features``);
* :mod:`.cache`: the on-disk ``FeatureCache``; :mod:`.identity`: its directory and the weights hash (a leaf).
"""
from .cache import FeatureCache
from .extract import extract_features
from .inputs import Inputs
from .runtimes import ENGINES

__all__ = ["ENGINES", "FeatureCache", "Inputs", "extract_features"]
