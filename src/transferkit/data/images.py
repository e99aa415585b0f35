"""Image decoding: EXIF orientation, grayscale / palette / RGBA to RGB, resize; a uint8 in-memory store.

Every file is checked before it is decoded: it must be a regular file (never a FIFO or a device, which would block
or never end) and must not declare more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb is refused
from its header, before any pixel memory is allocated).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, ImageOps

from ..backbones.base import ImagePreprocessor, as_uint8_images
from ..errors import DataError
from .dataset import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
MAX_SIDE = 65535  # the longest side accepted (JPEG's own limit): PIL keeps one pointer per row, so a 1 x 10^8
# strip costs gigabytes although its pixel count is within the limit
RESIZE_TEMP_PIXELS = 1 << 24  # a resize whose intermediate image would exceed this reduces the image first

_PROGRESS = {"enabled": True}  # the process-wide default of the decoding bar (see progress_bars)


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, the image-decoding bar is shown (``True``) or never shown (``False``: ``--quiet``)."""
    before = _PROGRESS["enabled"]
    _PROGRESS["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _PROGRESS["enabled"] = before


def _show_progress(progress: bool | None) -> bool:
    """An explicit ``progress`` wins; otherwise the enclosing :func:`progress_bars` setting (default: shown)."""
    return _PROGRESS["enabled"] if progress is None else bool(progress)


def pixel_limit() -> int | None:
    """The most pixels an image may declare (``PIL.Image.MAX_IMAGE_PIXELS``; None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


def _regular_file(path: str) -> None:
    """Raise unless ``path`` is a regular file (FIFOs, devices and folders are refused without opening them)."""
    try:
        if os.path.isfile(path):
            return
        why = "is not a regular file" if os.path.lexists(path) else "does not exist"
    except (OSError, ValueError):  # an embedded NUL byte, a name too long for the file system
        why = "is not a usable file name"
    raise ValueError(f"it {why}")


def _check_size(im: Image.Image) -> None:
    """Refuse a header that declares more pixels than :func:`pixel_limit` (before anything is decoded)."""
    limit = pixel_limit()
    w, h = im.size
    if max(w, h) > MAX_SIDE:
        raise ValueError(f"it declares {w}x{h} pixels, a side longer than {MAX_SIDE} (a decompression bomb?)")
    if limit is not None and w * h > limit:
        raise ValueError(f"it declares {w}x{h} pixels, more than the limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS; "
                         "a decompression bomb?)")


def _to_rgb(im: Image.Image) -> Image.Image:
    """EXIF rotation applied, high-depth grey scaled to 8 bits, alpha composited over white, then RGB."""
    im = ImageOps.exif_transpose(im)
    if im.mode in _HIGH_DEPTH:
        im = _scale_to_8bit(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def _open_rgb(path: str) -> Image.Image:
    """The decoded RGB image of ``path`` (first frame); raises ``ValueError`` / PIL errors on bad files."""
    _regular_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's bomb / palette warnings: the size is checked here, not warned about
        with Image.open(path) as im:
            _check_size(im)
            im.load()
            return _to_rgb(im)


def _problem(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text.strip().rstrip(".") or type(e).__name__


def image_problem(path: str) -> str | None:
    """Why ``path`` cannot be used as an image (fully decoded: ``verify()`` misses truncated data), or None."""
    try:
        _open_rgb(path)
        return None
    except Exception as e:  # noqa: BLE001 - PIL raises many types for corrupt files (SyntaxError, struct.error)
        return _problem(e)


def is_readable_image(path: str) -> bool:
    """Whether :func:`load_rgb` can decode ``path``."""
    return image_problem(path) is None


def _resize(im: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize to ``size`` x ``size``; extreme aspect ratios (a 1 x 10^7 strip) are box-reduced first, so the
    resampler's intermediate image stays small."""
    resample = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
    w, h = im.size
    if max(size * h, w * size) > RESIZE_TEMP_PIXELS:
        im = im.reduce((max(1, w // (4 * size)), max(1, h // (4 * size))))
    return im.resize((size, size), resample)


def load_rgb(path: str, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Decode a file to an RGB uint8 array [size, size, 3] (EXIF rotation applied, alpha over white)."""
    try:
        im = _open_rgb(path)
        return np.asarray(_resize(im, size, interpolation), dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise DataError(f"Cannot read image '{path}': {_problem(e)}. Remove or replace the file.") from None


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey images: scale to 0..255 (a plain convert would clip); NaN / inf pixels become 0."""
    a = np.asarray(im, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    peak = float(a.max()) if a.size else 0.0
    top = 65535.0 if im.mode.startswith("I;16") else max(peak, 1.0)
    if im.mode == "I" and peak <= 65535:
        top = 65535.0 if peak > 255 else 255.0
    return Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")


class ImageStore:
    """Serves uint8 batches [B, 3, S, S] for a dataset, decoding and resizing each image once.

    ``progress``: show the decoding bar (large data sets only); None follows :func:`progress_bars`.
    """

    def __init__(self, ds: Dataset, pre: ImagePreprocessor, cache_limit_bytes: int = 3 << 30,
                 progress: bool | None = None) -> None:
        self.ds, self.pre = ds, pre
        self.progress = _show_progress(progress)
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
                for i in tqdm(idx, desc="decode images", unit="img", leave=False,
                              disable=not self.progress or len(idx) < 256)]
        if not arrs:
            return torch.empty(0, 3, self.pre.size, self.pre.size, dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.ds)

    def batch(self, idx: Sequence[int] | np.ndarray) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[torch.as_tensor(np.asarray(idx), dtype=torch.long)]
        return self._decode(list(idx))
