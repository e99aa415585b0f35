"""PNG plots: confusion matrix, learning curve, predicted vs true."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(cm: list[list[int]], classes: list[Any], path: Path, title: str = "Confusion matrix") -> Path:
    cm_a = np.asarray(cm, dtype=np.float64)
    norm = cm_a / np.maximum(cm_a.sum(1, keepdims=True), 1)
    n = len(classes)
    size = min(2 + 0.5 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(cm_a[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="row-normalised")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curve(epochs: list[dict[str, float]], path: Path, metric_name: str) -> Path:
    ep = [e["epoch"] for e in epochs]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(ep, [e["train_loss"] for e in epochs], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(ep, [e["val_metric"] for e in epochs], "s-", color="tab:orange", label=f"validation {metric_name}")
    ax2.set_ylabel(f"validation {metric_name}", color="tab:orange")
    ax1.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pred_vs_true(y: np.ndarray, pred: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, pred, s=8, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs true")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
