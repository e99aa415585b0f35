"""Evaluate a saved run on new labelled data: metrics.json, plots and report.md in an output folder."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..data import Columns, load_path
from ..engine.inputs import Inputs
from ..evaluation.plots import plot_confusion, plot_pred_vs_true
from .predict import check_modality
from .store import LoadedRun, write_json


def evaluate_run(run: LoadedRun, data: str, out: Path) -> tuple[dict[str, Any], Path]:
    from ..data.labels import LabelMap
    from ..pipeline import evaluate_model

    c = run.config
    ds = load_path(data, Columns(text=c.text_column, image=c.image_column, label=c.label_column, id=c.id_column),
                   c.strict, task=c.task)
    check_modality(run, ds, f"'{data}'")
    if run.label_map is None:
        y = (ds.y.astype(float) - run.labels["target_mean"]) / run.labels["target_std"]
    else:
        y = LabelMap.from_dict(run.labels).encode(ds.y, f"'{data}'")
    ev = evaluate_model(run.model, Inputs(ds, run.model.backbone), y, run.labels)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_json(tmp / "metrics.json", {"data": str(data), "run": str(run.path), **ev.metrics})
    lines = [f"# Evaluation of `{run.path}` on `{data}`", "", f"{len(ds)} examples.", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in ev.metrics.items() if isinstance(v, float)]
    if run.label_map is None:
        plot_pred_vs_true(ev.y_true, ev.outputs, tmp / "pred_vs_true.png")
        lines += ["", "![predicted vs true](pred_vs_true.png)"]
    else:
        plot_confusion(ev.metrics["confusion_matrix"], run.label_map.classes, tmp / "confusion_matrix.png")
        lines += ["", "![confusion matrix](confusion_matrix.png)"]
    (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return ev.metrics, out / "report.md"
