"""Seeded, stratified train / validation / test splits."""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int,
                     stratify: bool = True) -> list[np.ndarray]:
    """Split indices into len(fractions)+1 parts (the first part takes the remainder).

    Each class contributes at least one sample to every part; a class too small for that raises.
    """
    if y is None:
        raise DataError("The training data have no labels (targets) to split on. Give labelled data: a label "
                        "column, class sub-folders, or y.")
    rng = np.random.default_rng(seed)
    n_parts = len(fractions) + 1
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    groups = {}
    if stratify:
        for i, c in enumerate(map(str, y)):
            groups.setdefault(c, []).append(i)
    else:
        groups = {"all": list(range(len(y)))}
    for cls, idx in sorted(groups.items()):
        if len(idx) < n_parts:
            raise DataError(f"Class '{cls:.60}' has {len(idx)} sample(s); splitting into train/validation/test "
                            f"needs at least {n_parts}. Add samples, drop the class, or pass --val/--test data."
                            f"{_numeric_hint(groups)}")
        idx = np.asarray(idx)[rng.permutation(len(idx))]
        start = 0
        takes = [max(1, int(round(f * len(idx)))) for f in fractions]
        for k, take in enumerate(takes, start=1):
            parts[k].extend(idx[start:start + take])
            start += take
        parts[0].extend(idx[start:])
        if len(idx[start:]) == 0:
            raise DataError(f"Class '{cls}' has {len(idx)} samples, too few to keep one for training.")
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _numeric_hint(groups: dict[str, list[int]]) -> str:
    """A hint when the 'classes' look like a numeric target (mostly distinct numbers, some fractional)."""
    names = list(groups)
    try:
        values = [float(n) for n in names]
    except ValueError:
        return ""
    n = sum(len(v) for v in groups.values())
    if len(names) > n / 2 and any(not v.is_integer() for v in values):
        return " The labels look like a numeric target: for regression use --task regression."
    return ""


def per_class_budget(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of at most k examples per class (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in sorted(set(map(str, y))):
        idx = np.flatnonzero(np.asarray([str(v) for v in y]) == c)
        out.extend(idx[rng.permutation(len(idx))[:k]])
    return np.sort(np.asarray(out, dtype=np.int64))
