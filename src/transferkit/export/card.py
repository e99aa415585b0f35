"""The model card (README.md) of an export: what the model is, its data, metrics, labels, lineage, parity with the
run, intended use and limits, and how to load it."""
from __future__ import annotations

import json
from typing import Any

from ..runs.store import LoadedRun
from .formats import ExportFormat
from .parity import Parity

CLASSIFICATION_METRICS = ("n", "accuracy", "macro_f1", "weighted_f1", "ece")
REGRESSION_METRICS = ("n", "mae", "rmse", "r2")
MAX_LABELS_SHOWN = 50
# What each input is, by name (names come from transferkit.export.graph and the hf format).
INPUT_NOTES = {
    "images": "RGB pixels 0..255, channels first, at the run's input size; normalised inside the graph",
    "input_ids": "token ids of the saved tokenizer, truncated to the run's max_length",
    "attention_mask": "1 for tokens, 0 for padding",
    "term_ids": "ids of the text's word 1-2 grams in term_vocabulary.json, one per occurrence (0 as padding); the "
                "graph counts them and applies sublinear tf, idf and the l2 norm, as the run's TF-IDF does",
    "term_mask": "1 for terms, 0 for padding",
    "text": "raw strings; the saved tokenizer truncates them to the run's max_length",
}
HYBRID_NOTE = ("This hybrid run adds a TF-IDF branch that reads the raw text, which an ONNX graph cannot tokenise: "
               "its terms are a second input pair (term_ids / term_mask), built from term_vocabulary.json by the "
               "few lines under How to load, so one graph still gives the run's probabilities.")


def _metrics(run: LoadedRun) -> dict[str, Any]:
    try:
        m = json.loads((run.path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _metrics_section(run: LoadedRun) -> list[str]:
    m = _metrics(run)
    keys = CLASSIFICATION_METRICS if run.label_map is not None else REGRESSION_METRICS
    rows = [(part, m[part]) for part in ("test", "val") if isinstance(m.get(part), dict)]
    if not rows:
        return ["No metrics.json beside the run."]
    lines = ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {part} | " + " | ".join(_fmt(vals.get(k, "")) for k in keys) + " |" for part, vals in rows]
    sizes = (m.get("details") or {}).get("sizes")
    if isinstance(sizes, dict):
        lines += ["", "Examples per split: " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + "."]
    return lines


def _labels_section(run: LoadedRun) -> list[str]:
    if run.label_map is None:
        mean, std = float(run.model.target_mean), float(run.model.target_std)
        return [(f"Regression: one number per input, in the target's units (training mean {mean:.4g}, "
                 f"standard deviation {std:.4g}).")]
    classes = run.label_map.classes
    shown = ", ".join(f"{i}: `{c}`" for i, c in enumerate(classes[:MAX_LABELS_SHOWN]))
    more = f", ... ({len(classes)} in all)" if len(classes) > MAX_LABELS_SHOWN else ""
    return [f"{len(classes)} classes, by output column: {shown}{more}."]


def _export_line(fmt: ExportFormat, details: dict[str, Any]) -> str:
    from .._version import __version__

    how = [f"torch.onnx ({details['exporter']} exporter)"] if details.get("exporter") else []
    how += [details["quantized"]] if details.get("quantized") else []
    how += [details["architecture"]] if details.get("architecture") else []
    return f"- exported as `{fmt.name}` by transferkit {__version__}" + (f": {', '.join(how)}" if how else "")


def _lineage_section(run: LoadedRun) -> list[str]:
    meta = run.model.backbone.meta
    lines = [f"- backbone `{meta.spec}` (source {meta.source}, {'pretrained' if meta.pretrained else 'random init'}"
             f", licence {meta.licence}), strategy `{run.config.strategy}`, head `{run.info.get('head', 'linear')}`"
             + (", with a TF-IDF branch (hybrid)" if run.model.lexical is not None else "")]
    for step in run.info.get("lineage") or []:
        lines.append(f"- from {json.dumps(step, default=str)}")
    env = run.info.get("environment") or {}
    lines.append(f"- run `{run.path.name}` created {run.info.get('created', '?')} with transferkit "
                 f"{env.get('transferkit', '?')}, torch {env.get('torch', '?')}, seed {run.info.get('seed', '?')}")
    return lines


def _limits(run: LoadedRun, fmt: ExportFormat, parity: Parity) -> list[str]:
    meta = run.model.backbone.meta
    out = [("- Intended use: predicting the labels above for inputs like the training data; the metrics were "
            "measured on held-out splits of that data, and say nothing about other sources.")]
    if meta.modality == "image":
        out.append(f"- Images must be decoded to RGB and resized to {meta.input_size}x{meta.input_size} "
                   f"({meta.interpolation}) as under How to load; the graph refuses other sizes.")
    else:
        out.append(f"- Texts are truncated to {meta.max_length} tokens, as in the run.")
    if run.model.lexical is not None:
        out.append("- The TF-IDF branch knows only the terms of the training texts (term_vocabulary.json).")
    if run.label_map is not None:
        ece = (_metrics(run).get("test") or {}).get("ece")
        if isinstance(ece, float):
            out.append(f"- Probabilities are as calibrated as the run's (test ECE {ece:.3f}).")
    if fmt.name == "onnx-int8":
        out.append("- int8 weights move the probabilities a little (see the parity figures); the fp32 `onnx` "
                   "export matches the run to float rounding.")
        if meta.modality == "image":
            out.append("- Only MatMul / Gemm weights are int8: convolutions stay float (dynamic int8 convolutions "
                       "ran 2x slower on CPU), so an image model is about as large and fast as its fp32 export.")
    if fmt.name == "hf":
        out.append("- The pooler is a near-identity (2^-16 * I, under tanh) and the classifier is scaled by 2^16 to "
                   "match: re-initialise both before fine-tuning this folder further.")
    if parity.inputs == "synthetic":
        out.append("- The parity check used synthetic inputs: it shows the export computes what the run computes, "
                   "not how accurate either is.")
    return out


def model_card(run: LoadedRun, fmt: ExportFormat, details: dict[str, Any], parity: Parity) -> str:
    """The README.md of an export."""
    c, meta = run.config, run.model.backbone.meta
    task = "classifier" if run.label_map is not None else "regressor"
    head = [f"# {run.path.name}: transferkit export ({fmt.name})", ""]
    if not parity.ok:
        head += [(f"> **PARITY FAILED**: this export disagrees with its run ({'; '.join(parity.failures)}). "
                  "Do not deploy it; see parity.json."), ""]
    article = "An" if meta.modality[0] in "aeiou" else "A"
    head += [f"{article} {meta.modality} {task} on `{meta.spec}`, exported from the transferkit run `{run.path}`.",
             ""]
    data = [f"- modality {meta.modality}, task {c.task}",
            f"- train `{c.train or 'in-memory data (Python API)'}`"
            + (f", validation `{c.val}`" if c.val else f", validation split {c.val_fraction:g} of train")
            + (f", test `{c.test}`" if c.test else f", test split {c.test_fraction:g} of train")]
    inputs = [f"- `{name}`: {spec['dtype']} [{', '.join(map(str, spec['shape']))}]: {INPUT_NOTES.get(name, '')}"
              for name, spec in details["inputs"].items()]
    if run.model.lexical is not None:
        inputs.append(f"- {HYBRID_NOTE}")
    out_desc = "softmax probabilities [N, classes]" if details["output"] == "probabilities" \
        else "predictions [N] in the target's units"
    rule = parity.rule
    checks = []
    if rule.max_abs_diff is not None:
        checks.append(f"max abs diff <= {rule.max_abs_diff:g}")
    if rule.min_top1 is not None:
        checks.append(f"top-1 agreement >= {rule.min_top1:g}")
    parity_lines = [
        ("Outputs of this folder (run with its own runtime, inputs built from its own files) against the run's "
         f"PyTorch predictions on {parity.rows} {parity.inputs} inputs:"), "",
        f"- max abs diff {parity.max_abs_diff:.3g}, mean abs diff {parity.mean_abs_diff:.3g}"
        + ("" if parity.top1_agreement is None else f", top-1 agreement {parity.top1_agreement:.4f}"),
        f"- required: {' and '.join(checks) or 'nothing'}"
        + ("" if parity.task == "classification" else f" (in units of the target's std, {parity.scale:.4g})")
        + f": **{'passed' if parity.ok else 'FAILED'}** (parity.json)"]
    files = [f"- `{f}`" for f in details.get("files", [])] + ["- `parity.json`, `README.md`"]
    sections = [
        ("Inputs and output", inputs + [f"- output `{details['output']}`: {out_desc}"]
         + ([f"- {details['note']}"] if details.get("note") else [])),
        ("How to load", ["```python", fmt.usage(run, details).rstrip(), "```"]),
        ("Labels", _labels_section(run)),
        ("Data", data),
        ("Metrics (from the run's metrics.json)", _metrics_section(run)),
        ("Parity with the run", parity_lines),
        ("Lineage", [*_lineage_section(run), _export_line(fmt, details)]),
        ("Intended use and limits", _limits(run, fmt, parity)),
        ("Files", files),
    ]
    body = head
    for title, lines in sections:
        body += [f"## {title}", "", *lines, ""]
    return "\n".join(body)


__all__ = ["model_card"]
