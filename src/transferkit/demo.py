"""`transferkit demo`: fully offline. Packaged ImageNet EfficientNet-Lite0 on scikit-learn's digits
(linear probe, LP-FT, fine-tune) against the scratch CNN at the same budget and a pixels + logistic
regression baseline on the same split: one table, the transfer gain, one report."""
from __future__ import annotations

import time
from pathlib import Path

from sklearn.datasets import load_digits

from .config import FitConfig, TrainConfig
from .data import from_arrays
from .pipeline import fit
from .runs.store import write_json

DEMO_RUNS = [
    ("linear-probe", "packaged:efficientnet_lite0"),
    ("lp-ft", "packaged:efficientnet_lite0"),
    ("fine-tune", "packaged:efficientnet_lite0"),
    ("fine-tune", "scratch:cnn"),
]


def _classical_row(ds, seed: int) -> dict:
    """Pixels + logistic regression on exactly the split that `fit` makes (same seed, same fractions)."""
    from .evaluation.metrics import classification_metrics, softmax
    from .pipeline import encode_targets, load_splits
    from .baselines import fit_classical

    cfg = FitConfig(seed=seed)
    t0 = time.perf_counter()
    splits = load_splits(cfg, train=ds)
    labels, (ytr, yva, yte) = encode_targets(cfg, splits)
    m = fit_classical(splits.train, ytr, splits.val, yva, "classification", len(labels["classes"]), seed)
    met = classification_metrics(yte, softmax(m.outputs(splits.test)), labels["classes"])
    return {"strategy": "classical", "backbone": f"none ({m.details['features']} + LR)", "macro_f1": met["macro_f1"],
            "accuracy": met["accuracy"], "seconds": time.perf_counter() - t0, "report": None}


def run_demo(runs_dir: str | Path = "runs/demo", fast: bool = False, progress: bool = True,
             seed: int = 0) -> list[dict]:
    digits = load_digits()
    X, y = digits.images, digits.target
    if fast:
        X, y = X[:400], y[:400]
    ds = from_arrays(X, y)
    rows = [_classical_row(ds, seed)]
    for strategy, backbone in DEMO_RUNS:
        name = f"{strategy}-{backbone.split(':')[1]}"
        cfg = FitConfig(backbone=backbone, strategy=strategy, image_size=64, seed=seed, runs_dir=str(runs_dir),
                        training=TrainConfig(epochs=2 if fast else 4, min_steps=30 if fast else 100), name=name,
                        overwrite=True)
        t0 = time.perf_counter()
        r = fit(cfg, train=ds, progress=progress)
        rows.append({"strategy": strategy, "backbone": backbone, "macro_f1": r.metrics["macro_f1"],
                     "accuracy": r.metrics["accuracy"], "seconds": time.perf_counter() - t0,
                     "report": str(r.run_dir / "report.md")})
    out = Path(runs_dir)
    lines = ["# transferkit demo: scikit-learn digits (8x8 upsampled to 64 px)", "",
             f"Same split (seed {seed}), same epoch budget. Test set of {int(round(len(y) * 0.15))}.", "",
             "| strategy | backbone | macro-F1 | accuracy | seconds | report |", "|---|---|---|---|---|---|"]
    for r in rows:
        rel = Path(r["report"]).relative_to(out) if r["report"] else None
        link = f"[{rel}]({rel})" if rel else "(same split)"
        lines.append(f"| {r['strategy']} | `{r['backbone']}` | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | "
                     f"{r['seconds']:.1f} | {link} |")
    best = max(rows, key=lambda r: r["macro_f1"])
    transfer = [r for r in rows if r["backbone"].startswith("packaged:")]
    baselines = [r for r in rows if not r["backbone"].startswith("packaged:")]
    best_t, best_b = max(transfer, key=lambda r: r["macro_f1"]), max(baselines, key=lambda r: r["macro_f1"])
    gain = best_t["macro_f1"] - best_b["macro_f1"]
    verdict = (f"Transfer {'helped' if gain > 0 else 'did not help'} here: best transfer ({best_t['strategy']}, "
               f"{best_t['macro_f1']:.4f}) minus best non-transfer baseline ({best_b['strategy']} on "
               f"{best_b['backbone']}, {best_b['macro_f1']:.4f}) = {gain:+.4f} macro-F1 (transfer gain). "
               f"Best overall: {best['strategy']} on {best['backbone']}.")
    lines += ["", verdict, ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    write_json(out / "summary.json", rows)
    print(f"\n{'strategy':<14}{'backbone':<36}{'macro-F1':>9}{'acc':>8}{'sec':>7}")
    for r in rows:
        print(f"{r['strategy']:<14}{r['backbone']:<36}{r['macro_f1']:>9.4f}{r['accuracy']:>8.4f}{r['seconds']:>7.1f}")
    print(f"\n{verdict}\nreport: {out / 'README.md'}")
    return rows
