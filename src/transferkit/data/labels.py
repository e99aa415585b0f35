"""Label <-> index mapping, made once from the training labels and saved with the run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class LabelMap:
    classes: list[Any]

    @classmethod
    def fit(cls, y: np.ndarray) -> LabelMap:
        values = [_plain(v) for v in y]
        try:
            classes = sorted(set(values))
        except TypeError:
            classes = sorted(set(values), key=str)
        return cls(classes)

    def encode(self, y: np.ndarray, where: str = "data") -> np.ndarray:
        index = {str(c): i for i, c in enumerate(self.classes)}
        out = np.empty(len(y), dtype=np.int64)
        for i, v in enumerate(y):
            key = str(_plain(v))
            if key not in index:
                raise DataError(f"Label {key!r} in {where} was not seen in training. "
                                f"Known labels: {', '.join(map(str, self.classes))}.")
            out[i] = index[key]
        return out

    def decode(self, idx: np.ndarray) -> list[Any]:
        return [self.classes[int(i)] for i in idx]

    def __len__(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": [_plain(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelMap:
        return cls(list(d["classes"]))
