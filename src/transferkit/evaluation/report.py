"""A run's report: plots (PNG) and a readable report.md that links them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backbones.base import BackboneMeta
from ..config import FitConfig
from .plots import plot_confusion, plot_learning_curve, plot_pred_vs_true


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_run_report(directory: Path, c: FitConfig, meta: BackboneMeta, labels: dict[str, Any], ev, history,
                     details: dict[str, Any]) -> Path:
    m = ev.metrics
    classical = details.get("classical")
    backbone_line = (f"- backbone: `{meta.spec}`, no transfer: the classical baseline's featuriser fitted on the "
                     f"training split ({meta.extra.get('features')}, {meta.feature_dim}-d features); head: "
                     f"{classical['model']}, C = {classical['chosen_C']:g} chosen on validation"
                     if meta.source == "classical" and classical else
                     f"- backbone: `{meta.spec}` ({meta.source}, {'pretrained' if meta.pretrained else 'random init'}, "
                     f"{meta.feature_dim}-d features, licence {meta.licence})")
    lines = [f"# transferkit run: {directory.name.split('.partial')[0].lstrip('.')}", "", backbone_line,
             f"- strategy: `{c.strategy}`" + (f" (freeze {c.training.freeze})" if c.training.freeze else "") +
             f"; task: {c.task}; seed: {c.seed}",
             f"- data: train {details['sizes']['train']}, validation {details['sizes']['val']}, "
             f"test {details['sizes']['test']}" + (f" ({details['split_note']})" if details.get("split_note") else ""),
             f"- fit time: {details['fit_seconds']:.1f} s"]
    for i, step in enumerate(details.get("lineage") or []):
        lines.append(f"- {'started from' if i == 0 else 'which started from'} run `{step['run']}` "
                     f"({step['strategy']} on `{step['backbone']}`, data `{step.get('train')}`)")
    auto = details.get("auto")
    if auto:  # why `auto` chose this backbone and strategy (transferkit.ranking.auto)
        lines.append(f"- chosen by `auto`: {auto['reason']}")
    lines.append("")
    if auto and auto.get("ranking"):
        lines += [f"## Transferability ranking ({auto.get('ranking_metric', 'logme')}, training split)", "",
                  *auto["ranking"], ""]
    issues = details.get("data_issues") or {}
    if issues:
        lines += ["**Data issues:** " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in issues.items()), ""]
    lines += ["## Test metrics", "", "| metric | value |", "|---|---|"]
    keys = ("mae", "rmse", "r2") if c.task == "regression" else \
        ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "ece")
    lines += [f"| {k} | {_fmt(m[k])} |" for k in keys] + [""]
    if c.task == "regression":
        plot_pred_vs_true(ev.y_true, ev.outputs, directory / "pred_vs_true.png")
        lines += ["![predicted vs true](pred_vs_true.png)", ""]
    else:
        plot_confusion(m["confusion_matrix"], labels["classes"], directory / "confusion_matrix.png")
        lines += ["## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                  for k, v in m["per_class"].items()]
        lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    if history is not None and history.epochs:
        metric = "-RMSE (standardised)" if c.task == "regression" else "macro-F1"
        plot_learning_curve(history.epochs, directory / "learning_curve.png", metric)
        lines += ["## Training", "", f"Best epoch {history.best_epoch} (validation {metric} "
                  f"{history.best_metric:.4f}){'; stopped early' if history.stopped_early else ''}.", "",
                  "![learning curve](learning_curve.png)", ""]
    probe = details.get("probe", details) if "chosen_C" in details.get("probe", details) else None
    if probe:
        lines += ["## Linear probe", "", f"Regularisation C = {probe['chosen_C']:g} chosen on validation "
                  f"(scores: {', '.join(f'C={k}: {v:.4f}' for k, v in probe['val_scores'].items())}). "
                  f"Feature extraction {probe['extract_seconds']:.1f} s (cache hits {probe['cache_hits']}, "
                  f"misses {probe['cache_misses']}).", ""]
    lines += ["## Reproduce", "", "```", f"transferkit fit --config {directory.name.split('.partial')[0].lstrip('.')}"
              "/config.yaml --overwrite", "```", "",
              "Files: `model.safetensors`, `config.yaml`, `labels.json`, `backbone.json`, `metrics.json`, "
              "`history.json`, `fit.log`, `tensorboard/`.", ""]
    path = directory / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
