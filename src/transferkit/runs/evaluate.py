"""Evaluate a saved run on new labelled data: metrics.json, plots and report.md in an output folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import Columns, load_path
from ..evaluation.evaluate import evaluate_model
from ..evaluation.plots import plot_confusion, plot_pred_vs_true
from ..features.inputs import Inputs
from .lifecycle import start_run
from .predict import check_modality
from .store import LoadedRun, write_json


def evaluate_run(run: LoadedRun, data: str, out: Path) -> tuple[dict[str, Any], Path]:
    from ..data.labels import LabelMap

    c = run.config
    ds = load_path(data, Columns(text=c.text_column, image=c.image_column, label=c.label_column, id=c.id_column),
                   c.strict, task=c.task)
    check_modality(run, ds, f"'{data}'")
    if run.label_map is None:
        y = (ds.y.astype(float) - run.labels["target_mean"]) / run.labels["target_std"]
    else:
        y = LabelMap.from_dict(run.labels).encode(ds.y, f"'{data}'")
    ev = evaluate_model(run.model, Inputs(ds, run.model.backbone), y, run.labels)
    with start_run(out.parent, out.name, overwrite=True, log_file="evaluate.log", verb="evaluate") as w:
        _write_evaluation(w.dir, run, data, ds, ev)
    return ev.metrics, out / "report.md"


def _write_evaluation(tmp: Path, run: LoadedRun, data: str, ds: Any, ev: Any) -> None:
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
