"""A distillation run's report.md: teacher vs distilled student vs the same student without distillation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..evaluation.plots import plot_confusion, plot_learning_curve


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _ms(row: dict[str, Any], key: str) -> str:
    v = row.get("latency", {}).get(key)
    return f"{v['seconds'] * 1e3:.2f} ms" if v else "-"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def comparison_table(comparison: dict[str, Any]) -> list[str]:
    """Markdown rows: test macro-F1 and accuracy, parameters, weights file, CPU latency at batch 1 and 32."""
    lines = ["| model | test macro-F1 | accuracy | parameters | weights file | CPU latency b=1 | b=32 |",
             "|---|---|---|---|---|---|---|"]
    names = {"teacher": "teacher", "student": "student (distilled)", "no_distillation": "student without "
             "distillation"}
    for key, label in names.items():
        r = comparison.get(key)
        if r is None:
            continue
        lines.append(f"| {label} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | {_params(r['parameters'])} | "
                     f"{_size(r['file_bytes'])} | {_ms(r, 'b1')} | {_ms(r, 'b32')} |")
    return lines


def summary_line(comparison: dict[str, Any]) -> str:
    """One sentence: share of the teacher's macro-F1, speed-up, size, and the gain over no distillation."""
    r = comparison["ratios"]
    text = (f"The student keeps {r['macro_f1_of_teacher']:.1%} of the teacher's test macro-F1 with "
            f"{r['parameters_of_teacher']:.1%} of its parameters, {r['speedup_b1']:.2f}x faster at batch 1 and "
            f"{r['speedup_b32']:.2f}x at batch 32")
    if r.get("gain_over_no_distillation") is not None:
        text += f"; distillation changed its macro-F1 by {r['gain_over_no_distillation']:+.4f} against the same " \
                "student trained without it"
    return text + "."


def write_report(directory: Path, name: str, c: Any, result: Any, history: Any, baseline_history: Any) -> Path:
    """report.md (and its plots) of a distillation run in ``directory``."""
    d, cmp_ = result.details, result.comparison
    t, s = cmp_["teacher"], d["student"]
    lines = [f"# transferkit distill: {name}", "",
             f"- teacher: run `{t['run']}` ({t['strategy']} on `{t['backbone']}`)",
             f"- student: `{s['spec']}`: {s['how']}",
             f"- distillation: temperature {c.temperature:g}, alpha {c.alpha:g} (hard-label weight), feature loss "
             f"{c.feature_loss:g}; transfer set {d['sizes']['labelled']} labelled + {d['sizes']['unlabelled']} "
             "unlabelled examples (soft targets only); teacher logits computed once"
             + (" (read from the feature cache)" if d["teacher_outputs"]["cache_hits"] else ""),
             f"- data: train {d['sizes']['train']}, validation {d['sizes']['val']}, test {d['sizes']['test']}"
             + (f" ({d['split_note']})" if d.get("split_note") else ""),
             f"- training: {c.training.epochs} epochs, batch {c.training.batch_size}, lr {d['lr']:g}; seed {c.seed}; "
             f"{d['seconds']['student']:.1f} s"]
    for i, step in enumerate(d.get("lineage") or []):
        lines.append(f"- {'learned from' if i == 0 else 'which started from'} run `{step['run']}` "
                     f"({step['strategy']} on `{step['backbone']}`, data `{step.get('train')}`)")
    lines += ["", "## Teacher vs student (test split)", "", *comparison_table(cmp_), "", summary_line(cmp_), "",
              f"Latency: median time of one forward pass on CPU over prepared test batches (decoded images, tokenised "
              f"texts), {t['threads']} torch thread(s), on the machine that trained the run.", ""]
    m = result.metrics
    plot_confusion(m["confusion_matrix"], result.labels["classes"], directory / "confusion_matrix.png")
    lines += ["## Per class (student)", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
              for k, v in m["per_class"].items()]
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    if history is not None and history.epochs:
        plot_learning_curve(history.epochs, directory / "learning_curve.png", "macro-F1")
        lines += ["## Training", "", f"Student: best epoch {history.best_epoch} (validation macro-F1 "
                  f"{history.best_metric:.4f})" + ("; stopped early" if history.stopped_early else "") + "."
                  + (f" Without distillation: best epoch {baseline_history.best_epoch} (validation macro-F1 "
                     f"{baseline_history.best_metric:.4f})." if baseline_history is not None else ""), "",
                  "![learning curve](learning_curve.png)", ""]
    lines += ["## Reproduce", "", "```", f"transferkit distill --config {name}/distill.yaml --overwrite", "```", "",
              "Files: `model.safetensors` (the student), `config.yaml` (the student as a fit run: predict, evaluate, "
              "export and `--backbone run:` read it), `distill.yaml`, `labels.json`, `backbone.json`, "
              "`metrics.json` (with the comparison under `distill`), `history.json`, `distill.log`.", ""]
    path = directory / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


__all__ = ["comparison_table", "summary_line", "write_report"]
