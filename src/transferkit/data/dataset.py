"""The in-memory dataset every loader produces: inputs (paths, arrays or texts), targets, ids."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Modality = Literal["image", "text"]


@dataclass
class Dataset:
    """Inputs of one modality with optional targets.

    ``inputs`` is a list of image paths, a numpy image array [N, H, W(, C)], or a list of texts.
    ``y`` holds raw labels (classification) or numbers (regression), or None for unlabelled data.
    ``value_max`` is the pixel value that maps to white for array images (e.g. 16 for sklearn digits).
    """

    modality: Modality
    inputs: Any
    y: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)
    origin: str = "arrays"
    value_max: float | None = None
    counts: dict[str, int] = field(default_factory=dict)  # e.g. skipped_images, replaced_utf8

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [str(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def is_array_images(self) -> bool:
        return self.modality == "image" and isinstance(self.inputs, np.ndarray)

    def subset(self, idx: np.ndarray | list[int]) -> Dataset:
        idx = np.asarray(idx, dtype=np.int64)
        inputs = self.inputs[idx] if isinstance(self.inputs, np.ndarray) else [self.inputs[i] for i in idx]
        return Dataset(self.modality, inputs, None if self.y is None else self.y[idx],
                       [self.ids[i] for i in idx], self.origin, self.value_max, dict(self.counts))

    def content_hash(self) -> str:
        """A hash of the inputs' content (pixel bytes, file bytes or text), for the feature cache."""
        h = hashlib.sha256()
        h.update(self.modality.encode())
        if isinstance(self.inputs, np.ndarray):
            h.update(str(self.inputs.shape).encode() + str(self.inputs.dtype).encode() + str(self.value_max).encode())
            h.update(np.ascontiguousarray(self.inputs).tobytes())
        elif self.modality == "image":
            for p in self.inputs:
                st = os.stat(p)
                h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        else:
            for t in self.inputs:
                h.update(t.encode("utf-8", "replace") + b"\x00")
        return h.hexdigest()[:24]
