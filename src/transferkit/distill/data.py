"""The data of a distillation: labelled splits (as ``fit`` makes them), unlabelled extras, and the transfer set
(the training split plus the unlabelled data, on which the teacher's soft targets are computed)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Columns, Dataset, load_path
from ..errors import DataError
from ..pipeline import Splits, load_splits
from ..runs.store import LoadedRun
from .config import DistillConfig
from .losses import UNLABELLED
from .teacher import check_data


@dataclass
class DistillData:
    splits: Splits
    unlabelled: Dataset | None
    y_train: np.ndarray   # class indices of the teacher's label map
    y_val: np.ndarray
    y_test: np.ndarray

    @property
    def transfer(self) -> Dataset:
        """The training split followed by the unlabelled rows."""
        return join(self.splits.train, self.unlabelled)

    @property
    def transfer_labels(self) -> np.ndarray:
        """Hard labels of the transfer set: the training split's, then ``UNLABELLED`` (-1) for the extra rows."""
        extra = 0 if self.unlabelled is None else len(self.unlabelled)
        return np.concatenate([self.y_train, np.full(extra, UNLABELLED, dtype=np.int64)])


def join(a: Dataset, b: Dataset | None) -> Dataset:
    """``a`` followed by ``b`` (labels dropped): two lists of files or texts, or two image arrays of one shape."""
    if b is None or len(b) == 0:
        return Dataset(a.modality, a.inputs, None, list(a.ids), a.origin, a.value_max, dict(a.counts))
    if isinstance(a.inputs, np.ndarray) and isinstance(b.inputs, np.ndarray):
        if a.inputs.shape[1:] != b.inputs.shape[1:] or a.value_max != b.value_max:
            raise DataError(f"The unlabelled images ('{b.origin}', {b.inputs.shape[1:]}, values up to {b.value_max}) "
                            f"differ from the training images ({a.inputs.shape[1:]}, values up to {a.value_max}). "
                            "Give arrays of one shape and value range.")
        inputs = np.concatenate([a.inputs, b.inputs.astype(a.inputs.dtype, copy=False)])
    elif isinstance(a.inputs, list) and isinstance(b.inputs, list):
        inputs = list(a.inputs) + list(b.inputs)
    else:
        raise DataError(f"The unlabelled data ('{b.origin}') and the training data ('{a.origin}') must both be "
                        "files (folders or tables) or both be arrays.")
    ids = [f"train:{i}" for i in a.ids] + [f"unlabelled:{i}" for i in b.ids]
    return Dataset(a.modality, inputs, None, ids, f"{a.origin} + {b.origin}", a.value_max)


def load_data(c: DistillConfig, teacher: LoadedRun, train: Dataset | None, unlabelled: Dataset | None,
              val: Dataset | None, test: Dataset | None) -> DistillData:
    """Splits of the labelled data (seeded, stratified, as ``fit``), the unlabelled data, both checked against the
    teacher (modality, label set), with labels encoded by the teacher's label map."""
    splits = load_splits(c.fit_view(c.student or "teacher"), train, val, test)
    if splits.train.y is None:
        raise DataError(f"The training data ('{splits.train.origin}') have no labels. Give labelled data (a label "
                        "column or class sub-folders); unlabelled data go in --unlabelled.")
    for what, ds in (("training data", splits.train), ("validation data", splits.val), ("test data", splits.test)):
        check_data(teacher, ds, what)
    if unlabelled is None and c.unlabelled:
        cols = Columns(text=c.text_column, image=c.image_column, label=c.label_column, id=c.id_column)
        unlabelled = load_path(c.unlabelled, cols, c.strict, labelled=False)
    if unlabelled is not None:
        unlabelled = Dataset(unlabelled.modality, unlabelled.inputs, None, list(unlabelled.ids), unlabelled.origin,
                             unlabelled.value_max, dict(unlabelled.counts))  # labels, if any, are never seen
        check_data(teacher, unlabelled, "unlabelled data")
        if len(unlabelled) == 0:
            raise DataError(f"The unlabelled data ('{unlabelled.origin}') are empty. Drop --unlabelled or give data.")
    lm = teacher.label_map
    return DistillData(splits, unlabelled, lm.encode(splits.train.y, "training data"),
                       lm.encode(splits.val.y, "validation data"), lm.encode(splits.test.y, "test data"))


__all__ = ["DistillData", "join", "load_data"]
