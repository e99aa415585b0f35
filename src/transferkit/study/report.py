"""Summaries of the study: mean ± std per series and budget, transfer gain, the curve, a plain-words verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..runs.store import write_json
from .columns import is_baseline


def _key(b: Any) -> tuple[int, float]:
    return (1, 0.0) if b == "all" else (0, float(b))


def summarise(cells: list[dict[str, Any]], cfg) -> dict[str, Any]:
    budgets = sorted({c["budget"] for c in cells}, key=_key)
    series = list(dict.fromkeys(c["series"] for c in cells))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for s in series:
        table[s] = {}
        for b in budgets:
            vals = [c["value"] for c in cells if c["series"] == s and c["budget"] == b]
            ns = [c["n_train"] for c in cells if c["series"] == s and c["budget"] == b]
            if vals:
                table[s][str(b)] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals),
                                    "n_train": float(np.mean(ns))}
    base = [s for s in series if is_baseline(s)]
    transfer = [s for s in series if not is_baseline(s)]
    gains = {}
    for b in budgets:
        kb = str(b)
        best_base = max(((table[s][kb]["mean"], s) for s in base if kb in table[s]), default=None)
        best_tr = max(((table[s][kb]["mean"], s) for s in transfer if kb in table[s]), default=None)
        if best_base and best_tr:
            gains[kb] = {"gain": best_tr[0] - best_base[0], "best_transfer": best_tr[1], "best_baseline": best_base[1],
                         "transfer": best_tr[0], "baseline": best_base[0], "negative": best_tr[0] < best_base[0]}
    metric = cells[0]["metric"] if cells else "macro_f1"
    verdict = _verdict(gains, table, base, transfer, budgets, metric)
    return {"metric": metric, "budgets": [str(b) for b in budgets], "series": series, "table": table,
            "gains": gains, "verdict": verdict, "cells": cells}


def _verdict(gains, table, base, transfer, budgets, metric) -> str:
    if not gains:
        return "Nothing to compare: the study needs at least one baseline and one transfer strategy."
    helped = [b for b, g in gains.items() if not g["negative"]]
    hurt = [b for b, g in gains.items() if g["negative"]]
    largest = max(gains.items(), key=lambda kv: abs(kv[1]["gain"]))
    if not hurt:
        head = f"Transfer helped at every budget on this data (largest gain {largest[1]['gain']:+.3f} {metric} at k={largest[0]})."
    elif not helped:
        head = (f"Transfer did not help on this data: the best baseline beat every transfer strategy at every budget "
                f"(largest gap {largest[1]['gain']:+.3f} {metric} at k={largest[0]}). Use the baseline.")
    else:
        head = (f"Transfer helped at k={', '.join(helped)} and hurt (negative transfer) at k={', '.join(hurt)} "
                f"(largest difference {largest[1]['gain']:+.3f} {metric} at k={largest[0]}).")
    full = "all" if "all" in gains else str(budgets[-1])
    target = max(table[s][full]["mean"] for s in base if full in table[s])
    match = None
    for b in budgets:
        kb = str(b)
        if any(kb in table[s] and table[s][kb]["mean"] >= target for s in transfer):
            match = kb
            break
    most = "with all labels" if full == "all" else f"at the largest budget studied (k={full})"
    if match is None:
        tail = f" No transfer strategy reached the best baseline's {metric} {most} ({target:.3f})."
    else:
        tail = (f" The smallest budget at which transfer matches the best baseline's {metric} {most} "
                f"({target:.3f}) is k={match}.")
    return head + tail


def plot_curve(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in summary["series"]:
        pts = [(v["n_train"], v["mean"], v["std"]) for _, v in summary["table"][s].items()]
        pts.sort()
        style = "--" if is_baseline(s) else "-"
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o" + style,
                    capsize=3, label=s)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel(f"test {summary['metric']}")
    ax.set_title("Data efficiency: transfer vs baselines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_table(summary: dict[str, Any]) -> list[str]:
    budgets = summary["budgets"]
    lines = ["| series | " + " | ".join(f"k={b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for s in summary["series"]:
        row = [f"{summary['table'][s][b]['mean']:.3f} ± {summary['table'][s][b]['std']:.3f}"
               if b in summary["table"][s] else "" for b in budgets]
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    gains = [f"{summary['gains'][b]['gain']:+.3f}{' (negative transfer)' if summary['gains'][b]['negative'] else ''}"
             if b in summary["gains"] else "" for b in budgets]
    lines.append("| **transfer gain** | " + " | ".join(gains) + " |")
    return lines


def write_study_report(out: Path, summary: dict[str, Any], cfg) -> Path:
    plot_curve(summary, out / "curve.png")
    write_json(out / "summary.json", {k: v for k, v in summary.items()})
    lines = ["# Data-efficiency study", "", f"**{summary['verdict']}**", "",
             f"Test {summary['metric']}, mean ± std over seeds {cfg.seeds}; k = labelled examples per class "
             "(fractions are of the training pool). All strategies share each seed's train/validation/test split; "
             "the validation split is the same for every budget.", ""]
    lines += markdown_table(summary)
    lines += ["", "Transfer gain = best transfer strategy minus the best non-transfer baseline (classical or "
              "scratch) at that budget.", "", "![data-efficiency curve](curve.png)", ""]
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path
