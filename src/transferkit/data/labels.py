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
    def fit(cls, y: np.ndarray | None) -> LabelMap:
        """The sorted distinct labels of ``y``; labels with the same text (``1`` and ``"1"``) are one class,
        as :meth:`encode` matches labels by their text."""
        if y is None:
            raise DataError("The training data have no labels. Give labelled data (a label column, class "
                            "sub-folders, or y).")
        by_text: dict[str, Any] = {}
        for v in y:
            v = _plain(v)
            try:
                by_text.setdefault(str(v), v)
            except TypeError:
                raise DataError(f"Label {v!r:.60} is a {type(v).__name__}; a label must be a plain string or "
                                "number.") from None
        values = list(by_text.values())
        try:
            classes = sorted(values)
        except TypeError:
            classes = sorted(values, key=str)
        return cls(classes)

    def encode(self, y: np.ndarray, where: str = "data") -> np.ndarray:
        index = {str(c): i for i, c in enumerate(self.classes)}
        out = np.empty(len(y), dtype=np.int64)
        for i, v in enumerate(y):
            key = str(_plain(v))
            if key not in index:
                known = ", ".join(map(str, self.classes[:20])) + (", ..." if len(self.classes) > 20 else "")
                raise DataError(f"Label {key!r:.80} in {where} was not seen in training. Known labels: {known}.")
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
