"""Issue 4 benchmarks: the classic transfer experiments as data-efficiency studies.

  A. source MNIST (scratch CNN trained on ../shared/data/mnist10k.npz) -> target scikit-learn digits
  B. ImageNet EfficientNet-Lite0 (packaged) -> digits, and -> MNIST (2,000-image subset)
  C. MiniLM (packaged) -> SpamAssassin, against scratch:transformer and TF-IDF + LR

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_transfer.py [--only A,B,C] [--quick]
Writes the section between <!-- transfer:start --> and <!-- transfer:end --> of BENCHMARKS.md and
benchmarks/out/transfer/<study>/ (report.md, curve.png, cells/ for resuming).
"""
from __future__ import annotations

import os
import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out" / "transfer"
sys.path.insert(0, str(ROOT / "src"))

from transferkit.config import FitConfig  # noqa: E402
from transferkit.data import Dataset, from_arrays  # noqa: E402
from transferkit.pipeline import fit  # noqa: E402
from transferkit.study import StudyConfig, compare  # noqa: E402
from transferkit.study.report import markdown_table  # noqa: E402
from markdown_blocks import update_section  # noqa: E402


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return from_arrays(d.images, d.target)


def mnist(n: int | None = None, offset: int = 0) -> Dataset:
    """Images ``offset .. offset+n`` of a fixed random order of mnist10k (the file is sorted by label, so a
    plain slice would hold only a few classes). Disjoint ranges give disjoint, class-balanced subsets."""
    z = np.load(DATA / "mnist10k.npz")
    x, y = z["images"], z["labels"]
    order = np.random.default_rng(20261125).permutation(len(y))
    sel = order[offset: offset + n if n else None]
    return from_arrays(x[sel], y[sel])


def spam() -> Dataset:
    rows = [json.loads(line) for line in gzip.open(DATA / "spamassassin.jsonl.gz", "rt", encoding="utf-8")]
    texts = [f"{r['subject']}\n{r['body']}" for r in rows]
    return Dataset("text", texts, np.asarray([r["label"] for r in rows], dtype=object), origin="spamassassin")


def source_run(quick: bool) -> Path:
    """Scratch CNN trained on 5,000 MNIST images (all ten classes; disjoint from B2's target images), 32 px."""
    path = OUT / "runs" / "mnist-cnn"
    if (path / "run.json").exists():
        return path
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="fine-tune", image_size=32, epochs=2 if quick else 3,
                    num_threads=1, lr=2e-3, runs_dir=str(OUT / "runs"), name="mnist-cnn", overwrite=True))
    r = fit(cfg, train=mnist(3000 if quick else 5000, offset=2000), progress=True)
    print(f"source run: MNIST test macro-F1 {r.metrics['macro_f1']:.4f}")
    return r.run_dir


def studies(quick: bool) -> dict[str, tuple[StudyConfig, Dataset]]:
    seeds = [0, 1] if quick else [0, 1, 2]
    img_budgets = [1, 10, "all"] if quick else [1, 5, 10, 50, "all"]
    base_img = FitConfig.from_dict(dict(num_threads=1, image_size=32, epochs=4 if quick else 8, lr=2e-3, patience=3, batch_size=32))
    out = {}
    out["A"] = ("MNIST-trained scratch CNN -> digits", lambda: (StudyConfig(
        base=base_img, strategies=["classical", "scratch", "linear-probe", "fine-tune", "lp-ft"],
        backbones=[f"run:{os.path.relpath(source_run(quick))}"], budgets=img_budgets, seeds=seeds, out=str(OUT / "A-mnist-to-digits")),
        digits()))
    base_eff = FitConfig.from_dict(dict(num_threads=1, image_size=32, epochs=4, lr=1e-3, patience=3, batch_size=32))
    out["B1"] = ("ImageNet EfficientNet-Lite0 -> digits", lambda: (StudyConfig(
        base=base_eff, strategies=["classical", "scratch", "linear-probe", "fine-tune", "lp-ft"],
        backbones=["packaged:efficientnet_lite0"], budgets=img_budgets, seeds=seeds,
        out=str(OUT / "B1-imagenet-to-digits")), digits()))
    out["B2"] = ("ImageNet EfficientNet-Lite0 -> MNIST (2,000 images)", lambda: (StudyConfig(
        base=base_eff, strategies=["classical", "scratch", "linear-probe", "fine-tune", "lp-ft"],
        backbones=["packaged:efficientnet_lite0"], budgets=img_budgets, seeds=seeds,
        out=str(OUT / "B2-imagenet-to-mnist")), mnist(2000)))
    # lp-ft fine-tunes at lr/10 (1e-4 at the head, decayed per layer below it)
    base_txt = FitConfig.from_dict(dict(num_threads=1, max_length=128, epochs=2, lr=1e-3, batch_size=16, patience=2))
    out["C"] = ("MiniLM -> SpamAssassin", lambda: (StudyConfig(
        base=base_txt, strategies=["classical", "scratch", "linear-probe", "lp-ft", "hybrid"],
        backbones=["packaged:minilm-l6"], budgets=[8, 64] if quick else [8, 64, 256], seeds=seeds[:2],
        out=str(OUT / "C-minilm-to-spam")), spam()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="A,B1,B2,C")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    global OUT
    if args.quick:
        OUT = OUT.parent / "transfer-quick"
    plan = studies(args.quick)
    header = ["## Transfer gain (issue 4)", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_transfer.py{' --quick' if args.quick else ''}`"
             f" ({time.strftime('%Y-%m-%d')}, 2 CPU cores). Test macro-F1, mean ± std over seeds; k = labelled "
             "training examples per class; every strategy shares each seed's split. Transfer gain = best transfer "
             "strategy minus the best non-transfer baseline (classical or scratch).", ""]
    update_section("\n".join(header), "transfer")
    for key in [k.strip() for k in args.only.split(",")]:
        title, make = plan[key]
        cfg, data = make()
        print(f"== {key}: {title}", flush=True)
        summary = compare(cfg, data=data, progress=True)
        parts = [f"### {key}. {title}", "", f"**{summary['verdict']}**", ""] + markdown_table(summary) + [
            "", f"Settings: {cfg.base.training.epochs} epochs max (patience {cfg.base.training.patience}), lr {cfg.base.training.lr:g}, "
            f"image size {cfg.base.image_size}, max length {cfg.base.max_length}; compute time of all cells "
            f"{sum(c['seconds'] for c in summary['cells']):.0f} s (1 torch thread, machine shared with other "
            f"benchmarks). Curve: `benchmarks/out/transfer/{Path(cfg.out).name}/curve.png`.", ""]
        update_section("\n".join(parts), f"transfer-{key}")
        print("\n".join(parts), flush=True)


if __name__ == "__main__":
    main()
