"""Predictions and evaluation from a saved run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import Columns, Dataset, load_path
from ..data.images import IMAGE_EXTENSIONS
from ..errors import DataError
from ..features.inputs import Inputs
from .store import LoadedRun


def check_modality(run: LoadedRun, ds: Dataset, what: str) -> None:
    if ds.modality != run.modality:
        raise DataError(f"Run '{run.path}' takes {run.modality}s but {what} holds {ds.modality}s. "
                        f"Give {run.modality} input.")


def inputs_to_dataset(run: LoadedRun, items: list[str]) -> Dataset:
    """Image files / folders, a text file (one text per line) or a table -> an unlabelled dataset."""
    c = run.config
    cols = Columns(text=c.text_column, image=c.image_column, label=c.label_column, id=c.id_column)
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if not p.exists():
            raise DataError(f"Input '{p}' does not exist.")
        low = p.name.lower()
        if p.is_dir():
            paths += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif low.endswith(IMAGE_EXTENSIONS):
            paths.append(str(p))
        elif low.endswith((".txt", ".text")):
            if len(items) > 1:
                raise DataError("Give one text file at a time.")
            raw = p.read_bytes()
            text = raw.decode("utf-8", errors="replace")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            ds = Dataset("text", lines, None, origin=str(p), counts={"replaced_utf8": sum("\ufffd" in t for t in lines)})
            check_modality(run, ds, f"'{p}'")
            return ds
        else:
            ds = load_path(p, cols, labelled=False)
            check_modality(run, ds, f"'{p}'")
            return ds
    if not paths:
        raise DataError(f"No images found in {', '.join(items)}.")
    from ..data.loaders import printable_name

    ds = Dataset("image", paths, None, ids=[printable_name(str(p)) for p in paths], origin=", ".join(items))
    check_modality(run, ds, "the input")
    return ds


def decode_outputs(run: LoadedRun, out: np.ndarray, top_k: int = 3) -> list[Any]:
    """Raw head outputs [N, C] -> per row the ``top_k`` best ``(label, probability)`` pairs, best first, or for
    regression the value in the target's units. The one decoding that ``predict`` and ``serve`` share."""
    from ..evaluation.metrics import softmax

    if run.label_map is None:
        return [float(v) for v in out[:, 0] * float(run.model.target_std) + float(run.model.target_mean)]
    probs = softmax(out)
    classes = run.label_map.classes
    k = max(1, min(top_k, len(classes)))
    return [[(classes[j], float(p[j])) for j in best] for p, best in zip(probs, np.argsort(-probs, axis=1)[:, :k])]


def predict_dataset(run: LoadedRun, ds: Dataset, top_k: int = 3, batch_size: int = 64) -> list[dict[str, Any]]:
    from ..engine.loop import predict_outputs

    check_modality(run, ds, f"'{ds.origin}'")
    decoded = decode_outputs(run, predict_outputs(run.model, Inputs(ds, run.model.backbone), batch_size), top_k)
    if run.label_map is None:
        return [{"id": i, "prediction": v} for i, v in zip(ds.ids, decoded)]
    rows: list[dict[str, Any]] = []
    for i, top in zip(ds.ids, decoded):
        rec: dict[str, Any] = {"id": i, "label": top[0][0], "probability": top[0][1]}
        for r, (label, p) in enumerate(top, start=1):
            rec[f"top{r}_label"], rec[f"top{r}_probability"] = label, p
        rows.append(rec)
    return rows
