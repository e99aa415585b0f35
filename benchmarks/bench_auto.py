"""Issue 6 benchmark, part 2: `auto` against every fixed choice of the data-efficiency study.

For each study of issue 4 (benchmarks/out/transfer/<study>/cells, written by bench_transfer.py) and each label
budget and seed, `auto` ranks the study's backbone against the classical baseline (LogME) on exactly the
training subset that cell used, applies the rule of ``transferkit.ranking.auto.decide`` and so picks one of the
study's series (classical, scratch, linear-probe / lp-ft / fine-tune on the backbone). A choice the study did not
run (e.g. frozen-K) is fitted here with the study's settings. `auto`'s score in a cell is the test macro-F1 of its
choice on that cell's split; `--verify N` re-fits N cells end to end through ``fit(backbone="auto",
strategy="auto")`` to check that this equals what the pipeline produces.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_auto.py [--studies A,B1,B2,C] [--verify 1]
Writes benchmarks/out/auto/ and the block between <!-- auto:start --> and <!-- auto:end --> of BENCHMARKS.md.
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
OUT = ROOT / "benchmarks" / "out" / "auto"

from bench_transfer import OUT as TRANSFER_OUT, digits, mnist, spam, update_section  # noqa: E402
from transferkit import ranking as rk  # noqa: E402
from transferkit.config import FitConfig  # noqa: E402
from transferkit.data import stratified_split  # noqa: E402
from transferkit.pipeline import fit  # noqa: E402
from transferkit.ranking.auto import FEW_LABELS, MANY_LABELS, SCRATCH_MIN_K, STRONG_MARGIN, decide  # noqa: E402
from transferkit.ranking.rank import rank_backbones  # noqa: E402
from transferkit.strategies import FeatureCache  # noqa: E402
from transferkit.study.compare import _budget_indices  # noqa: E402

STUDIES = {
    "A": ("A-mnist-to-digits", "MNIST-trained scratch CNN -> digits", digits),
    "B1": ("B1-imagenet-to-digits", "ImageNet EfficientNet-Lite0 -> digits", digits),
    "B2": ("B2-imagenet-to-mnist", "ImageNet EfficientNet-Lite0 -> MNIST (a fixed random 2,000-image sample of mnist10k)",
           lambda: mnist(2000)),
    "C": ("C-minilm-to-spam", "MiniLM -> SpamAssassin", spam),
}
SCRATCH = {"image": "scratch:cnn", "text": "scratch:transformer"}


def load_cells(folder: Path) -> dict[tuple, dict[str, dict]]:
    """{(budget, seed): {strategy: cell}} of a study's finished cells."""
    out: dict[tuple, dict[str, dict]] = {}
    for p in sorted((folder / "cells").glob("*.json")):
        c = json.loads(p.read_text())
        out.setdefault((c["budget"], c["seed"]), {})[c["strategy"]] = c
    return out


def series_of(choice: rk.AutoChoice, backbone: str, modality: str) -> str | None:
    """The study series that runs ``choice`` (None: the study has no such series)."""
    if choice.strategy == "classical":
        return "classical"
    if choice.backbone == SCRATCH[modality] and choice.strategy == "fine-tune":
        return "scratch"
    if choice.backbone == backbone and choice.strategy in ("linear-probe", "lp-ft", "fine-tune", "hybrid"):
        return choice.strategy
    return None


def budget_order(b) -> float:
    """Budgets in increasing order: labels per class, then fractions, then 'all'."""
    return float("inf") if b == "all" else float(b)


def run_study(key: str, verify: int) -> dict:
    folder_name, title, make = STUDIES[key]
    folder = TRANSFER_OUT / folder_name
    settings = json.loads((folder / "study.json").read_text())
    base = FitConfig.from_dict({k: v for k, v in settings["base"].items() if v is not None})  # None: the default
    data = make()
    if data.content_hash() != settings["data"]:
        raise SystemExit(f"{key}: the data differ from the study's ({folder}); re-run bench_transfer.py first.")
    cells = load_cells(folder)
    strategies = sorted({s for group in cells.values() for s in group})
    backbone = next(c["backbone"] for g in cells.values() for c in g.values() if c.get("backbone"))
    complete = {k: v for k, v in cells.items() if set(v) == set(strategies)}
    cache = FeatureCache()
    extra_dir = OUT / "extra_cells"
    extra_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for (budget, seed), group in sorted(complete.items(), key=lambda kv: (budget_order(kv[0][0]), kv[0][1])):
        pool, val, test = stratified_split(data.y, (base.val_fraction, base.test_fraction), seed, True)
        idx = _budget_indices(data.y[pool], budget, seed, base.task)
        train = data.subset(pool[idx])
        t0 = time.perf_counter()
        ranking = rank_backbones(train, [backbone], "logme", image_size=base.image_size, max_length=base.max_length,
                                 seed=seed, cache=cache)
        choice = decide(ranking)
        rank_s = time.perf_counter() - t0
        series = series_of(choice, backbone, data.modality)
        if series is not None:
            value = group[series]["value"]
        else:  # not in the study (e.g. frozen-K): fit it here, same split and settings
            path = extra_dir / f"{key}__{choice.backbone.replace(':', '-').replace('/', '_')}__{choice.strategy}__{budget}__{seed}.json"
            if path.exists():
                value = json.loads(path.read_text())["value"]
            else:
                from transferkit.backbones import create_backbone

                cfg = replace(base, backbone=choice.backbone, strategy=choice.fit_strategy, seed=seed)
                if choice.freeze_fraction:
                    groups = len(create_backbone(choice.backbone, image_size=base.image_size,
                                                 max_length=base.max_length).layer_groups())
                    cfg = cfg.updated(freeze=max(1, round(choice.freeze_fraction * groups)))
                r = fit(cfg, train=train, val=data.subset(val), test=data.subset(test), progress=False, save=False,
                        cache=cache)
                value = float(r.metrics["macro_f1"])
                path.write_text(json.dumps({"value": value, "config": cfg.to_dict()}))
            series = f"{choice.strategy} ({choice.backbone}, fitted here)"
        fixed = {s: group[s]["value"] for s in strategies}
        rows.append({"budget": budget, "seed": seed, "choice": choice.to_dict(), "series": series, "value": value,
                     "fixed": fixed, "rank_seconds": rank_s, "margin": choice.margin})
        print(f"{key} k={budget} seed={seed}: auto -> {series} ({value:.3f}); best fixed "
              f"{max(fixed, key=fixed.get)} {max(fixed.values()):.3f}; margin {choice.margin}", flush=True)
    checks = []
    for row in rows[:verify]:
        budget, seed = row["budget"], row["seed"]
        pool, val, test = stratified_split(data.y, (base.val_fraction, base.test_fraction), seed, True)
        idx = _budget_indices(data.y[pool], budget, seed, base.task)
        cfg = replace(base, backbone="auto", strategy="auto", candidates=backbone, seed=seed)
        t0 = time.perf_counter()
        r = fit(cfg, train=data.subset(pool[idx]), val=data.subset(val), test=data.subset(test), progress=False,
                save=False, cache=cache)
        checks.append({"budget": budget, "seed": seed, "fit_value": float(r.metrics["macro_f1"]),
                       "cell_value": row["value"], "fit_choice": [r.details["auto"]["backbone"],
                                                                  r.details["auto"]["strategy"]],
                       "reason": r.details["auto"]["reason"], "seconds": time.perf_counter() - t0})
        print(f"verify {key} k={budget} seed={seed}: fit(auto) {checks[-1]['fit_value']:.4f} vs cell "
              f"{row['value']:.4f}", flush=True)
    return {"key": key, "title": title, "backbone": backbone, "strategies": strategies, "rows": rows,
            "incomplete": sorted(f"k={b} seed={s}" for (b, s) in cells if (b, s) not in complete),
            "checks": checks}


def summarise(study: dict) -> tuple[list[str], dict]:
    bb = study["backbone"]
    label = {s: (s if s in ("classical", "scratch") else f"{s}") for s in study["strategies"]}
    budgets = []
    for r in study["rows"]:
        if r["budget"] not in budgets:
            budgets.append(r["budget"])
    lines = [f"#### {study['key']}. {study['title']} (backbone `{bb}`)", "",
             "| k | auto's picks (per seed) | auto | best fixed | worst fixed | auto - best | auto's rank among "
             f"{len(study['strategies'])} fixed + auto | auto worst? |", "|---|---|---|---|---|---|---|---|"]
    stats = {"cells": 0, "picked_best": 0, "budgets": 0, "never_worst": 0, "gaps": []}
    for b in budgets:
        rs = [r for r in study["rows"] if r["budget"] == b]
        auto = float(np.mean([r["value"] for r in rs]))
        fixed = {s: float(np.mean([r["fixed"][s] for r in rs])) for s in study["strategies"]}
        best = max(fixed, key=fixed.get)
        worst = min(fixed, key=fixed.get)
        rank = 1 + sum(v > auto + 1e-12 for v in fixed.values())
        is_worst = auto <= fixed[worst] + 1e-12
        picks = ", ".join(r["series"] for r in rs)
        lines.append(f"| {b} | {picks} | {auto:.3f} | {label[best]} {fixed[best]:.3f} | {label[worst]} "
                     f"{fixed[worst]:.3f} | {auto - fixed[best]:+.3f} | {rank} | {'**yes**' if is_worst else 'no'} |")
        stats["budgets"] += 1
        stats["never_worst"] += not is_worst
        stats["gaps"].append(auto - fixed[best])
        for r in rs:
            stats["cells"] += 1
            stats["picked_best"] += r["value"] >= max(r["fixed"].values()) - 1e-12
    lines.append("")
    if study["incomplete"]:
        lines += [f"Not yet finished in the study (left out): {', '.join(study['incomplete'])}.", ""]
    for c in study["checks"]:
        lines += [f"End-to-end check, k={c['budget']} seed {c['seed']}: `fit(backbone='auto', strategy='auto', "
                  f"candidates='{bb}')` chose {c['fit_choice']} and scored {c['fit_value']:.4f} "
                  f"(the cell used above: {c['cell_value']:.4f}; {c['seconds']:.0f} s). Reason written to the report: "
                  f"\"{c['reason']}\"", ""]
    return lines, stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", default="A,B1,B2,C")
    ap.add_argument("--verify", type=int, default=1, help="cells per study re-fitted end to end through fit(auto)")
    args = ap.parse_args()
    keys = [k.strip() for k in args.studies.split(",")]
    missing = [k for k in keys if not (TRANSFER_OUT / STUDIES[k][0] / "study.json").exists()]
    if missing:  # a fresh checkout: the studies come from another script
        print(f"bench_auto.py reuses the issue-4 studies {', '.join(missing)}, which are not in "
              f"{os.path.relpath(TRANSFER_OUT)}: run `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_transfer.py "
              f"--only {','.join(missing)}` first. Nothing was written.", flush=True)
        sys.exit(2)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    studies = [run_study(key, args.verify) for key in keys]
    (OUT / "results.json").write_text(json.dumps(studies, indent=2, default=str))
    lines = ["## `auto` against fixed choices (issue 6)", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_auto.py --studies "
             f"{','.join(s['key'] for s in studies)} --verify {args.verify}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {(time.time() - t0) / 60:.1f} min, 1 torch "
             "thread, shared 2-core machine). Reuses the cells of the issue-4 data-efficiency studies (same splits, "
             "budgets, seeds and settings); only `auto`'s ranking (and any choice the study did not run) is "
             "computed here.", "",
             f"The rule (`transferkit/ranking/auto.py`): LogME ranking of the study's backbone against the classical "
             f"baseline on the cell's training subset; k = labels per class. Baseline first -> no transfer: a "
             f"scratch CNN for images with k >= {SCRATCH_MIN_K['image']}, else the classical baseline (text: the "
             f"hybrid TF-IDF + embeddings strategy, which includes TF-IDF alone among its validation choices). Backbone first -> k < {FEW_LABELS}: lp-ft; {FEW_LABELS} <= k < {MANY_LABELS} with LogME "
             f"margin >= {STRONG_MARGIN}: frozen-K (bottom half frozen); otherwise fine-tune.", "",
             "Test macro-F1, mean over the study's seeds; `auto` = the mean of its per-seed choices. In-sample "
             "caveat: the thresholds were set with the finished studies A and B1 in view, and the first seven cells "
             "of C (seed 0, k=8 and 64) had been seen too (they informed 'text: no scratch model'); the remaining C "
             "cells and B2 were not available when the rule was written.", ""]
    totals = {"cells": 0, "picked_best": 0, "budgets": 0, "never_worst": 0, "gaps": []}
    per_study = []
    for s in studies:
        part, st = summarise(s)
        lines += part
        per_study.append((s["key"], st))
        for k in ("cells", "picked_best", "budgets", "never_worst"):
            totals[k] += st[k]
        totals["gaps"] += st["gaps"]
    lines += ["#### Summary", "", "| study | budgets | auto never the worst fixed choice | auto picked the best "
              "(per seed-cell) | mean gap to best | largest gap to best |", "|---|---|---|---|---|---|"]
    for key, st in per_study + [("all", totals)]:
        if not st["budgets"]:
            continue
        lines.append(f"| {key} | {st['budgets']} | {st['never_worst']}/{st['budgets']} | {st['picked_best']}/"
                     f"{st['cells']} ({st['picked_best'] / max(st['cells'], 1):.0%}) | {np.mean(st['gaps']):+.3f} | "
                     f"{min(st['gaps']):+.3f} |")
    lines.append("")
    text = "\n".join(lines)
    update_section(text, "auto")
    print(text)


if __name__ == "__main__":
    main()
