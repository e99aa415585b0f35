"""Parity of an export with the run: the exported model's outputs on sample inputs against the run's own PyTorch
predictions (the code path of ``transferkit predict``).

Classification compares probabilities (largest and mean absolute difference) and the top-1 label; regression the
predictions, with the rule's differences in units of the target's standard deviation (the unit of a regressor's
own errors: a ridge head on standardised targets can cancel large terms, so float rounding is relative to the
target's scale, not to 1). A :class:`ParityRule` says what passes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..runs.store import LoadedRun

NEAR_TIE = 0.01  # a top-1 disagreement where the run's two best probabilities differ by less is a near tie


@dataclass(frozen=True)
class ParityRule:
    """What an export must meet: ``max_abs_diff`` (None: not checked) and ``min_top1`` agreement (classification;
    None: not checked)."""

    max_abs_diff: float | None = None
    min_top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# fp32 exports must match the run to float rounding: probabilities within 1e-4, predictions within 1e-3 target std.
EXACT = {"classification": ParityRule(max_abs_diff=1e-4), "regression": ParityRule(max_abs_diff=1e-3)}


@dataclass(frozen=True)
class Parity:
    """How an export's outputs compare with the run's on ``rows`` sample inputs from ``inputs``."""

    format: str
    task: str
    rows: int
    inputs: str  # "synthetic ..." or the --sample path
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None
    near_ties: int | None  # top-1 disagreements where the run's two best probabilities are within NEAR_TIE
    scale: float  # the rule's max_abs_diff is in these units (regression: the target's std); figures are raw
    rule: ParityRule
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def summary(self) -> str:
        """One line: the figures and the verdict."""
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.4f}"
        if self.near_ties:
            top1 += f" ({self.near_ties} of the disagreements near ties)"
        what = "probabilities" if self.task == "classification" else "predictions"
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.failures)
        return (f"parity ({self.format}) on {self.rows} {self.inputs} inputs: max abs diff of {what} "
                f"{self.max_abs_diff:.3g}{top1}: {verdict}")


def reference_outputs(run: LoadedRun, ds: Dataset, batch_size: int = 64) -> np.ndarray:
    """The run's probabilities [N, C] (classification) or predictions [N] (regression), as ``predict`` makes them."""
    from ..engine.loop import predict_outputs
    from ..evaluation.metrics import softmax
    from ..features.inputs import Inputs

    out = predict_outputs(run.model, Inputs(ds, run.model.backbone), batch_size)
    if run.label_map is None:
        return out[:, 0] * float(run.model.target_std) + float(run.model.target_mean)
    return softmax(out)


def compare(ref: np.ndarray, out: np.ndarray, task: str, rule: ParityRule, fmt: str, inputs: str,
            scale: float = 1.0) -> Parity:
    """The :class:`Parity` of ``out`` against ``ref`` under ``rule``."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64).reshape(ref.shape) if np.size(out) == np.size(ref) else out
    failures: list[str] = []
    if np.shape(out) != ref.shape:
        return Parity(fmt, task, len(ref), inputs, float("inf"), float("inf"), None, None, scale, rule,
                      [f"output shape {np.shape(out)}, expected {ref.shape}"])
    diff = np.abs(ref - out)
    worst = float(diff.max()) if diff.size else 0.0
    mean = float(diff.mean()) if diff.size else 0.0
    if not np.isfinite(out).all():
        failures.append("non-finite outputs")
    top1 = ties = None
    if task == "classification":
        differ = ref.argmax(1) != out.argmax(1)
        top1 = 1.0 - float(differ.mean()) if len(ref) else 1.0
        best2 = np.sort(ref, axis=1)[:, -2:] if ref.shape[1] > 1 else np.zeros((len(ref), 2))
        ties = int((differ & (best2[:, 1] - best2[:, 0] < NEAR_TIE)).sum())
        if rule.min_top1 is not None and top1 < rule.min_top1:
            failures.append(f"top-1 agreement {top1:.4f} < {rule.min_top1}")
    if rule.max_abs_diff is not None and not worst / scale <= rule.max_abs_diff:
        unit = "" if scale == 1.0 else f" x {scale:.4g} (the target's std)"
        failures.append(f"max abs diff {worst:.3g} > {rule.max_abs_diff:g}{unit}")
    return Parity(fmt, task, len(ref), inputs, worst, mean, top1, ties, scale, rule, failures)


def diff_scale(run: LoadedRun) -> float:
    """The unit of a rule's differences: 1 for probabilities, the target's std for a regression (1 if it is 0)."""
    if run.label_map is not None:
        return 1.0
    return abs(float(run.model.target_std)) or 1.0


__all__ = ["EXACT", "Parity", "ParityRule", "compare", "diff_scale", "reference_outputs"]
