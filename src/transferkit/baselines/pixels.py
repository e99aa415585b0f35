"""The raw-pixel featuriser of the classical image baseline: resize (bilinear, antialiased) to at most 32 px,
scale to [0, 1], flatten in (channel, row, column) order and standardise each pixel with the training mean and
standard deviation. As a :class:`~transferkit.backbones.base.Backbone` (``classical:pixels``) it makes the fitted
baseline an ordinary ``TransferModel``: ``head(pixels(x))``."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from ..backbones.base import Backbone, BackboneMeta, ImagePreprocessor
from ..data.dataset import Dataset
from ..data.images import ImageStore

MAX_SIZE = 32


def pixel_size(ds: Dataset, cap: int = MAX_SIZE) -> int:
    """The side the baseline resizes to: the array images' larger side, at most ``cap`` (``cap`` for files)."""
    if ds.is_array_images:
        return int(min(cap, max(ds.inputs.shape[1], ds.inputs.shape[2])))
    return cap


def pixel_preprocessor(size: int) -> ImagePreprocessor:
    """uint8 -> float in [0, 1] at ``size`` px (mean 0, std 1 in [0, 1] units)."""
    return ImagePreprocessor(size, (0.0,) * 3, (1.0,) * 3, "bilinear")


def pixel_matrix(ds: Dataset, size: int) -> np.ndarray:
    """Unstandardised pixels [N, 3 * size * size] in [0, 1] (float32), in dataset order."""
    store = ImageStore(ds, pixel_preprocessor(size))
    return store.batch(np.arange(len(ds))).float().numpy().reshape(len(ds), -1) / 255.0


def fit_pixel_scaler(x: np.ndarray) -> StandardScaler:
    """Per-pixel standardisation (constant pixels keep scale 1, as scikit-learn does)."""
    return StandardScaler().fit(x)


class PixelFeaturiser(Backbone):
    """``classical:pixels``: ``(flatten(x) - mean_) / scale_`` for images preprocessed to ``size`` px in [0, 1].

    Args:
        size: the side of an unfitted featuriser (a rebuilt run's); :meth:`fit` sets it from the data.
    """

    MODALITY = "image"

    @classmethod
    def unfitted(cls, image_size: int | None = None, **_: Any) -> PixelFeaturiser:
        """The unfitted featuriser of the ``classical:pixels`` spec (``image_size``: a saved run's side)."""
        return cls(image_size or MAX_SIZE)

    def __init__(self, size: int = MAX_SIZE) -> None:
        super().__init__()
        d = 3 * int(size) * int(size)
        self.register_buffer("mean_", torch.zeros(d))
        self.register_buffer("scale_", torch.ones(d))
        self._set_size(int(size))

    def _set_size(self, size: int) -> None:
        self.size = size
        self.preprocess = pixel_preprocessor(size)
        self.meta = BackboneMeta(spec="classical:pixels", modality="image", feature_dim=3 * size * size,
                                 source="classical", pretrained=False, input_size=size, mean=(0.0,) * 3,
                                 std=(1.0,) * 3, interpolation="bilinear", licence="n/a",
                                 extra={"features": f"pixels {size}x{size}"})

    def fit(self, ds: Dataset) -> PixelFeaturiser:
        """Choose the size from ``ds`` (:func:`pixel_size`) and learn the per-pixel mean and scale on it."""
        size = pixel_size(ds)
        self.set_scaler(size, fit_pixel_scaler(pixel_matrix(ds, size)))
        return self

    def set_scaler(self, size: int, scaler: StandardScaler) -> None:
        """Adopt a fitted per-pixel ``scaler`` for ``size`` px images."""
        self._set_size(int(size))
        self.mean_ = torch.as_tensor(scaler.mean_, dtype=torch.float32)
        self.scale_ = torch.as_tensor(scaler.scale_, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) - self.mean_) / self.scale_


__all__ = ["MAX_SIZE", "PixelFeaturiser", "fit_pixel_scaler", "pixel_matrix", "pixel_preprocessor", "pixel_size"]
