"""Issue 6 benchmark, part 1: do transferability scores predict fine-tuned accuracy?

For each task every candidate is scored on the training split from frozen features (``rank_backbones``), then
fine-tuned on the same split (the classical baseline is fitted instead), and the rank correlation between each
score and test accuracy is reported (Kendall's tau and weighted tau, scipy).

Tasks (one stratified split per seed, k labelled training examples per class):
  digits  scikit-learn digits (1,797 8x8 images, 32 px), k=50
  mnist   a stratified random 3,000-image subset of ../shared/data/mnist10k.npz (32 px), k=50
  spam    a stratified 1,000-e-mail subset of SpamAssassin (subject + body), k=150, max_length 64
Candidates: packaged EfficientNet-Lite0/1/2; Lite0 with the top half of its layer groups re-initialised (saved as a
run and used as run:PATH); scratch:cnn; a scratch CNN trained on another source task (MNIST -> digits is the issue-4
source run; digits -> MNIST is trained here); the classical baseline. Text: MiniLM, MiniLM with its top half
re-initialised, scratch:transformer, TF-IDF.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ranking.py [--seeds 0] [--tasks digits,mnist,spam]
Results per (task, seed, candidate) are kept in benchmarks/out/ranking/cells/ (re-running resumes); writes the block
between <!-- ranking:start --> and <!-- ranking:end --> of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "out" / "ranking"

from bench_transfer import digits, source_run, spam, update_section  # noqa: E402
from transferkit.config import FitConfig  # noqa: E402
from transferkit.data import Dataset, LabelMap, from_arrays, per_class_budget, stratified_split  # noqa: E402
from transferkit.pipeline import fit  # noqa: E402
from transferkit.ranking.rank import BASELINE, rank_backbones  # noqa: E402
from transferkit.ranking.scores import METRICS  # noqa: E402
from transferkit.strategies import FeatureCache  # noqa: E402

IMAGE_FT = FitConfig.from_dict(dict(num_threads=1, image_size=32, epochs=4, lr=1e-3, batch_size=32, patience=3, min_steps=60))
TEXT_FT = FitConfig.from_dict(dict(num_threads=1, max_length=64, epochs=3, lr=2e-4, batch_size=16, patience=2, min_steps=0))


def mnist3000() -> Dataset:
    z = np.load(ROOT.parent / "shared" / "data" / "mnist10k.npz")
    x, y = z["images"], z["labels"]
    keep = per_class_budget(y, 300, seed=0)  # the file is sorted by label: sample every class
    return from_arrays(x[keep], y[keep])


def spam1000() -> Dataset:
    ds = spam()
    return ds.subset(per_class_budget(ds.y, 500, seed=0))


def reinit_top(spec: str, fraction: float, name: str, opts: dict) -> str:
    """Save ``spec`` with the top ``fraction`` of its layer groups re-initialised as a run; return 'run:PATH'."""
    from transferkit.backbones import create_backbone
    from transferkit.engine.model import TransferModel
    from transferkit.runs.lifecycle import start_run
    from transferkit.runs.store import run_info, save_model_files, write_json

    path = OUT / "runs" / name
    if (path / "run.json").exists():
        return f"run:{path}"
    torch.manual_seed(0)
    bb = create_backbone(spec, **opts)
    groups = bb.layer_groups()
    top = {n for g in groups[len(groups) - int(round(fraction * len(groups))):] for n in g}
    n_reset = 0
    for mod_name, mod in bb.named_modules():
        own = [f"{mod_name}.{p}" if mod_name else p for p, _ in mod.named_parameters(recurse=False)]
        if own and all(p in top for p in own) and hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
            n_reset += 1
    model = TransferModel(bb, 1, "linear")
    cfg = FitConfig(backbone=spec, strategy="linear-probe", name=name, runs_dir=str(OUT / "runs"), **opts)
    with start_run(OUT / "runs", name, overwrite=True, log_file="reinit.log") as w:
        save_model_files(w.dir, model, cfg, {"task": "none"})  # no trained head: not a source classifier
        write_json(w.dir / "run.json", run_info(cfg, time.time(), {"name": name, "head": "linear", "lineage": [],
                                                                   "note": f"{spec}, top {fraction:.0%} of layer groups "
                                                                   f"({n_reset} modules) re-initialised"}))
    return f"run:{path}"


def mnist_source_run() -> str:
    """The issue-4 MNIST-trained scratch CNN (the source for MNIST -> digits), built here when
    ``bench_transfer.py`` has not written it yet (benchmarks/out/transfer/runs/mnist-cnn)."""
    return f"run:{os.path.relpath(source_run(quick=False))}"


def digits_source_run() -> str:
    """A scratch CNN trained on scikit-learn digits (32 px), the source for digits -> MNIST."""
    path = OUT / "runs" / "digits-cnn"
    if not (path / "run.json").exists():
        cfg = IMAGE_FT.updated(backbone="scratch:cnn", strategy="fine-tune", lr=2e-3, epochs=6, runs_dir=str(OUT / "runs"), name="digits-cnn", overwrite=True)
        fit(cfg, train=digits(), progress=False)
    return f"run:{path}"


def tasks() -> dict:
    lite = ["packaged:efficientnet_lite0", "packaged:efficientnet_lite1", "packaged:efficientnet_lite2"]
    img = {"image_size": 32}
    return {
        "digits": dict(title="digits (sklearn, 8x8 -> 32 px)", data=digits, k=50, ft=IMAGE_FT, opts=img,
                       candidates=lambda: lite + [reinit_top(lite[0], 0.5, "lite0-reinit-top", img), "scratch:cnn",
                                                  mnist_source_run()]),
        "mnist": dict(title="MNIST (3,000-image stratified subset, 32 px)", data=mnist3000, k=50, ft=IMAGE_FT,
                      opts=img, candidates=lambda: lite + [reinit_top(lite[0], 0.5, "lite0-reinit-top", img),
                                                           "scratch:cnn", digits_source_run()]),
        "spam": dict(title="SpamAssassin (1,000-e-mail stratified subset)", data=spam1000, k=150, ft=TEXT_FT,
                     opts={"max_length": 64},
                     candidates=lambda: ["packaged:minilm-l6",
                                         reinit_top("packaged:minilm-l6", 0.5, "minilm-reinit-top", {"max_length": 64}),
                                         "scratch:transformer"]),
    }


def split(ds: Dataset, k: int, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    pool, val, test = stratified_split(ds.y, (0.15, 0.15), seed, True)
    train = pool[per_class_budget(ds.y[pool], k, seed)]
    return ds.subset(train), ds.subset(val), ds.subset(test)


def run_task(key: str, spec: dict, seed: int) -> list[dict]:
    cells = OUT / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    ds = spec["data"]()
    train, val, test = split(ds, spec["k"], seed)
    candidates = spec["candidates"]()
    cache = FeatureCache()
    rows = []
    for cand in candidates + [BASELINE]:
        short = cand.rsplit("/", 1)[-1] if cand.startswith("run:") else cand
        path = cells / f"{key}__{seed}__{short.replace(':', '-')}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
            continue
        t0 = time.perf_counter()
        r = rank_backbones(train, [] if cand == BASELINE else [cand], "logme", metrics=[m for m in METRICS if m != "logme"],
                           baseline=cand == BASELINE, seed=seed, cache=cache, **spec["opts"])
        entry = r.entries[0]
        rank_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if cand == BASELINE:
            from transferkit.baselines import fit_classical

            lm = LabelMap.fit(train.y)
            m = fit_classical(train, lm.encode(train.y), val, lm.encode(val.y), "classification", len(lm), seed)
            acc = float(np.mean(np.argmax(m.outputs(test), axis=1) == lm.encode(test.y)))
        else:
            cfg = replace(spec["ft"], backbone=cand, strategy="fine-tune", seed=seed)
            acc = float(fit(cfg, train=train, val=val, test=test, progress=False, save=False, cache=cache)
                        .metrics["accuracy"])
        row = {"task": key, "seed": seed, "candidate": short, "spec": cand, "scores": entry.scores,
               "feature_dim": entry.feature_dim, "note": entry.note, "rank_seconds": rank_s,
               "finetune_seconds": time.perf_counter() - t0, "accuracy": acc, "n_train": len(train)}
        path.write_text(json.dumps(row, indent=2))
        print(f"{key} seed {seed} {short}: acc {acc:.4f} logme {entry.scores['logme']:.4f} "
              f"(rank {rank_s:.1f} s, fine-tune {row['finetune_seconds']:.1f} s)", flush=True)
        rows.append(row)
    return rows


def correlations(rows: list[dict]) -> dict[str, dict]:
    from scipy.stats import kendalltau, weightedtau

    out = {}
    for m in METRICS:
        pts = [(r["scores"][m], r["accuracy"], r["candidate"]) for r in rows if r["scores"].get(m) is not None]
        if len(pts) < 3:
            out[m] = {"n": len(pts)}
            continue
        s, a, names = map(list, zip(*pts))
        best = max(range(len(a)), key=lambda i: a[i])
        pick = max(range(len(s)), key=lambda i: s[i])
        out[m] = {"n": len(pts), "tau": float(kendalltau(s, a).statistic), "wtau": float(weightedtau(s, a).statistic),
                  "top1": names[pick], "top1_is_best": pick == best, "regret": float(a[best] - a[pick])}
    return out


def fmt(v: float | None, nd: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:+.{nd}f}"


def write_section(all_rows: dict[str, list[dict]], specs: dict, seeds: list[int], wall: float) -> str:
    cell_minutes = sum(r["rank_seconds"] + r["finetune_seconds"] for rows in all_rows.values() for r in rows) / 60
    lines = ["## Transferability ranking (issue 6)", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ranking.py --seeds "
             f"{','.join(map(str, seeds))}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 1 torch thread, "
             f"2-core machine shared with other jobs; {cell_minutes:.1f} min of scoring + fitting in all cells, "
             f"{wall / 60:.1f} min wall for this invocation, which reuses finished cells from benchmarks/out/ranking/cells).",
             "",
             "Each candidate is scored on the training split only (frozen features, standardised as the linear probe "
             "does; the classical baseline on its own pixels / TF-IDF), then fine-tuned on that split (`fine-tune`, "
             "early stopping on the validation split; the classical baseline is fitted instead) and evaluated on the "
             "test split. LEEP and NCE exist only where a candidate has a source classifier head (ImageNet for "
             "EfficientNet-Lite, the trained head of a `run:` source); the correlation uses those candidates only "
             "(n). Kendall's tau and weighted tau (scipy, hyperbolic weights favouring the top) between score and test "
             "accuracy over the candidates; top-1 = the score's first choice, regret = best accuracy minus the "
             "accuracy of that choice.", ""]
    summary = {}
    for key, rows in all_rows.items():
        spec = specs[key]
        ft = spec["ft"]
        lines += [f"### {spec['title']}, k={spec['k']} per class (n_train {rows[0]['n_train']})", ""]
        by_seed = {}
        for r in rows:
            by_seed.setdefault(r["seed"], []).append(r)
        for seed, rs in sorted(by_seed.items()):
            rs = sorted(rs, key=lambda r: -r["accuracy"])
            lines += [f"Seed {seed}: candidates by test accuracy.", "",
                      "| candidate | test acc | LogME | LEEP | NCE | H-score | k-NN LOO | rank time (s) | fine-tune time (s) |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in rs:
                s = r["scores"]
                lines.append(f"| {r['candidate']} | {r['accuracy']:.4f} | " + " | ".join(
                    "n/a" if s.get(m) is None else f"{s[m]:.4f}" for m in METRICS) +
                    f" | {r['rank_seconds']:.1f} | {r['finetune_seconds']:.1f} |")
            lines.append("")
            corr = correlations(rs)
            summary[(key, seed)] = corr
            lines += ["| score | n | Kendall tau | weighted tau | top-1 | top-1 is best | regret (acc) |",
                      "|---|---|---|---|---|---|---|"]
            for m in METRICS:
                c = corr[m]
                if "tau" not in c:
                    lines.append(f"| {m} | {c['n']} | - | - | - | - | - |")
                    continue
                lines.append(f"| {m} | {c['n']} | {fmt(c['tau'])} | {fmt(c['wtau'])} | {c['top1']} | "
                             f"{'yes' if c['top1_is_best'] else 'no'} | {c['regret']:.4f} |")
            lines.append("")
        rank_total = sum(r["rank_seconds"] for r in rows)
        ft_total = sum(r["finetune_seconds"] for r in rows)
        lines += [f"Cost over all seeds: scoring every candidate {rank_total:.0f} s (feature extraction through the "
                  f"cache + all five scores) vs fine-tuning them {ft_total:.0f} s ({ft_total / max(rank_total, 1e-9):.0f}x).",
                  ""]
        lines += [f"Fine-tune settings: {ft.training.epochs} epochs max (patience {ft.training.patience}), lr {ft.training.lr:g}, batch "
                  f"{ft.training.batch_size}, min_steps {ft.training.min_steps}, image size {ft.image_size}, max length {ft.max_length}.",
                  ""]
    lines += ["### Summary: rank correlation with fine-tuned test accuracy", "",
              "| task (seed) | " + " | ".join(f"{m} tau / wtau" for m in METRICS) + " |",
              "|---|" + "---|" * len(METRICS)]
    for (key, seed), corr in summary.items():
        lines.append(f"| {key} ({seed}) | " + " | ".join(
            f"{fmt(corr[m].get('tau'), 2)} / {fmt(corr[m].get('wtau'), 2)}" if "tau" in corr[m] else
            f"n={corr[m]['n']}" for m in METRICS) + " |")
    means = []
    for m in METRICS:
        taus = [c[m]["tau"] for c in summary.values() if "tau" in c[m]]
        wtaus = [c[m]["wtau"] for c in summary.values() if "tau" in c[m]]
        means.append(f"{np.mean(taus):+.2f} / {np.mean(wtaus):+.2f} ({len(taus)})" if taus else "-")
    lines.append("| **mean (tables)** | " + " | ".join(means) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--tasks", default="digits,mnist,spam")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    specs = tasks()
    t0 = time.time()
    all_rows = {}
    for key in [k.strip() for k in args.tasks.split(",")]:
        all_rows[key] = [r for seed in seeds for r in run_task(key, specs[key], seed)]
    text = write_section(all_rows, specs, seeds, time.time() - t0)
    (OUT / "results.json").write_text(json.dumps(all_rows, indent=2))
    update_section(text, "ranking")
    print(text)


if __name__ == "__main__":
    main()
