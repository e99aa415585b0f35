"""Seeded stratified splits, label budgets and the label map."""
from __future__ import annotations

import numpy as np
import pytest

from transferkit.data import LabelMap, per_class_budget, stratified_split
from transferkit.errors import DataError


@pytest.fixture
def labels():
    rng = np.random.default_rng(1)
    return np.asarray(["cat"] * 40 + ["dog"] * 25 + ["eel"] * 7, dtype=object)[rng.permutation(72)]


def test_split_is_disjoint_covering_and_stratified(labels):
    parts = stratified_split(labels, (0.15, 0.15), seed=0)
    assert len(parts) == 3
    allidx = np.concatenate(parts)
    assert len(allidx) == len(labels) == len(set(allidx.tolist()))
    assert set(allidx.tolist()) == set(range(len(labels)))
    for p in parts:
        assert set(labels[p]) == {"cat", "dog", "eel"}, "every class in every part"
        assert (np.diff(p) > 0).all()
    # fractions honoured per class (rounded, at least one)
    assert sum(labels[parts[1]] == "cat") == 6 and sum(labels[parts[1]] == "eel") == 1


def test_split_is_seeded(labels):
    a = stratified_split(labels, (0.2, 0.2), seed=5)
    b = stratified_split(labels, (0.2, 0.2), seed=5)
    c = stratified_split(labels, (0.2, 0.2), seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_unstratified_split_for_regression():
    y = np.linspace(0, 1, 50)
    tr, va, te = stratified_split(y, (0.2, 0.1), seed=0, stratify=False)
    assert (len(tr), len(va), len(te)) == (35, 10, 5)
    assert len(set(np.concatenate([tr, va, te]).tolist())) == 50


def test_too_small_class_names_the_class():
    y = np.asarray(["a"] * 10 + ["rare"] * 2)
    with pytest.raises(DataError, match="Class 'rare' has 2 sample"):
        stratified_split(y, (0.15, 0.15), seed=0)
    # with only a validation part, 2 samples suffice
    tr, va = stratified_split(y, (0.15,), seed=0)
    assert sum(y[tr] == "rare") == 1 and sum(y[va] == "rare") == 1


def test_per_class_budget(labels):
    idx = per_class_budget(labels, 5, seed=0)
    counts = {c: int(sum(labels[idx] == c)) for c in ("cat", "dog", "eel")}
    assert counts == {"cat": 5, "dog": 5, "eel": 5}
    np.testing.assert_array_equal(idx, per_class_budget(labels, 5, seed=0))
    assert not np.array_equal(idx, per_class_budget(labels, 5, seed=1))
    assert len(per_class_budget(labels, 30, seed=0)) == 30 + 25 + 7


def test_label_map_roundtrip_and_unseen_label():
    lm = LabelMap.fit(np.asarray([3, 1, 2, 3, 1]))
    assert lm.classes == [1, 2, 3]
    enc = lm.encode(np.asarray([3, 1, 2]))
    assert enc.tolist() == [2, 0, 1]
    assert lm.decode(enc) == [3, 1, 2]
    lm2 = LabelMap.from_dict(lm.to_dict())
    assert lm2.classes == [1, 2, 3]
    with pytest.raises(DataError, match="Label '7' in test data was not seen.*Known labels: 1, 2, 3"):
        lm.encode(np.asarray([7]), "test data")


def test_label_map_mixed_types_sort():
    lm = LabelMap.fit(np.asarray(["b", 1, "a"], dtype=object))
    assert len(lm) == 3 and set(map(str, lm.classes)) == {"a", "b", "1"}
