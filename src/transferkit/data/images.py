"""Image decoding: EXIF orientation, grayscale / palette / RGBA to RGB, resize; a uint8 in-memory store."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from ..backbones.base import ImagePreprocessor, as_uint8_images
from ..errors import DataError
from .dataset import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_readable_image(path: str) -> bool:
    """Fully decodes the file: ``verify()`` alone misses truncated JPEG data."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # PIL raises many types for corrupt files
        return False


def load_rgb(path: str, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Decode a file to an RGB uint8 array [size, size, 3] (EXIF rotation applied, alpha over white)."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                im = _scale_to_8bit(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("RGB")
            resample = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
            im = im.resize((size, size), resample)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"Cannot read image '{path}': {e}. Remove or replace the file.") from None


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey images: scale to 0..255 (a plain convert would clip)."""
    a = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
    if im.mode == "I" and a.max() <= 65535:
        top = 65535.0 if a.max() > 255 else 255.0
    return Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")


class ImageStore:
    """Serves uint8 batches [B, 3, S, S] for a dataset, decoding and resizing each image once."""

    def __init__(self, ds: Dataset, pre: ImagePreprocessor, cache_limit_bytes: int = 3 << 30) -> None:
        self.ds, self.pre = ds, pre
        self._cache: torch.Tensor | None = None
        if len(ds) * 3 * pre.size * pre.size <= cache_limit_bytes:
            self._cache = self._decode(range(len(ds)))

    def _decode(self, idx: Sequence[int]) -> torch.Tensor:
        idx = list(idx)
        if self.ds.is_array_images:
            out = []
            for s in range(0, len(idx), 512):  # resize in chunks to bound memory
                chunk = as_uint8_images(self.ds.inputs[idx[s:s + 512]], self.ds.value_max or 255.0)
                out.append(self.pre.resize_uint8(chunk))
            return torch.cat(out) if out else torch.empty(0, 3, self.pre.size, self.pre.size, dtype=torch.uint8)
        from tqdm.auto import tqdm

        arrs = [load_rgb(self.ds.inputs[i], self.pre.size, self.pre.interpolation)
                for i in tqdm(idx, desc="decode images", unit="img", leave=False, disable=len(idx) < 256)]
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.ds)

    def batch(self, idx: Sequence[int] | np.ndarray) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[torch.as_tensor(np.asarray(idx), dtype=torch.long)]
        return self._decode(list(idx))
