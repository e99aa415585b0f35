"""Turn dataset indices into model-ready batches, for images and text alike."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..backbones.base import Backbone, ImagePreprocessor
from ..data.dataset import Dataset
from ..data.images import ImageStore


class Inputs:
    """Model inputs for one dataset: decoded images (uint8, cached) or pre-tokenised texts."""

    def __init__(self, ds: Dataset, backbone: Backbone) -> None:
        if ds.modality != backbone.meta.modality:
            from ..errors import DataError

            raise DataError(f"The data in '{ds.origin}' are {ds.modality}s but backbone "
                            f"'{backbone.meta.spec}' takes {backbone.meta.modality}s.")
        self.ds = ds
        self.pre = backbone.preprocess
        self.is_image = isinstance(self.pre, ImagePreprocessor)
        self._images: ImageStore | None = None
        self._ids: list[list[int]] | None = None

    # Decoding / tokenising is lazy, so a feature-cache hit never pays for it.
    @property
    def images(self) -> ImageStore | None:
        if self.is_image and self._images is None:
            self._images = ImageStore(self.ds, self.pre)
        return self._images

    @property
    def ids(self) -> list[list[int]] | None:
        if not self.is_image and self._ids is None:
            self._ids = self.pre.tokenize(self.ds.inputs)
        return self._ids

    def __len__(self) -> int:
        return len(self.ds)

    def lengths(self) -> np.ndarray:
        if self.ids is None:
            return np.ones(len(self), dtype=np.int64)
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def batch(self, idx: np.ndarray, texts: bool = True) -> Any:
        """The model input for rows ``idx``: an image tensor, or a dict of padded token tensors that also carries
        the raw texts under ``"texts"`` (a list, which backbones ignore; a model's lexical branch reads it).
        ``texts=False`` leaves them out (tensors only, e.g. for compiled / exported backbones)."""
        if self.images is not None:
            return self.pre(self.images.batch(idx))
        from ..backbones.text import collate_ids

        batch: dict[str, Any] = collate_ids([self.ids[i] for i in idx], self.pre.pad_id)
        if texts:
            batch["texts"] = [self.ds.inputs[i] for i in idx]
        return batch

    def order(self, batch_size: int, shuffle: bool, rng: np.random.Generator | None = None,
              buckets: bool = True) -> list[np.ndarray]:
        """Batches of indices. Text is length-bucketed (sorted within chunks of 50 batches) to cut padding, unless
        ``buckets`` is False (shuffled batches only)."""
        n = len(self)
        idx = rng.permutation(n) if shuffle and rng is not None else np.arange(n)
        if self.ids is not None and (buckets or not shuffle):
            lens = self.lengths()
            if shuffle:
                chunk = batch_size * 50
                idx = np.concatenate([c[np.argsort(-lens[c], kind="stable")]
                                      for c in np.array_split(idx, max(1, n // chunk + 1)) if len(c)])
            else:
                idx = np.argsort(-lens, kind="stable")
        batches = [idx[s:s + batch_size] for s in range(0, n, batch_size)]
        if shuffle and rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch.to(device, non_blocking=True)


def iterate(inputs: Inputs, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
    for b in inputs.order(batch_size, shuffle=False):
        yield b, inputs.batch(b)
