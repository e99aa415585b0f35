"""Issue 7 benchmarks: unsupervised domain adaptation, every method against source-only, 3 seeds.

  A. MNIST (2,000 images of ../shared/data/mnist10k.npz) -> scikit-learn digits (8x8 upsampled);
     target split per seed into an unlabelled half (adaptation) and a labelled half (test only)
  B. digits (all 1,797) -> MNIST (2,000 images: 1,000 unlabelled, 1,000 test)
  C. SpamAssassin older collection (easy-ham-1, spam-1) -> newer (easy-ham-2, hard-ham-1, spam-2),
     frozen MiniLM features (feature cache) + trainable MLP bottleneck and head; the target is split once
     (unlabelled half / test half) and the seeds vary initialisation and batch order

Usage: HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_adapt.py [--only A,B,C] [--seeds 0,1,2]
Each finished (study, seed, method) cell is saved under benchmarks/out/adapt/<study>/ (re-running resumes);
the tables go between <!-- adapt:start --> and <!-- adapt:end --> of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out" / "adapt"
sys.path.insert(0, str(ROOT / "src"))

from transferkit.adapt import AdaptConfig, adapt  # noqa: E402
from transferkit.adapt.selection import CRITERIA, choose, oracle  # noqa: E402
from transferkit.data import Dataset, from_arrays, stratified_split  # noqa: E402
from transferkit.errors import ConfigError  # noqa: E402
from markdown_blocks import update_section  # noqa: E402

METHODS = ["source-only", "adabn", "coral", "mmd", "dann", "cdan", "mcc", "self-training", "dann+mcc"]


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    z = np.load(DATA / "mnist10k.npz")
    return z["images"], z["labels"]


def _halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = stratified_split(y, (0.5,), seed)
    return a, b


def study_a(seed: int) -> tuple[Dataset, Dataset, Dataset]:
    from sklearn.datasets import load_digits

    x, y = _mnist()
    src = np.random.default_rng(seed).permutation(len(y))[:2000]
    d = load_digits()
    unl, test = _halves(d.target, seed)
    return (from_arrays(x[src], y[src]), from_arrays(d.images[unl], d.target[unl], value_max=16),
            from_arrays(d.images[test], d.target[test], value_max=16))


def study_b(seed: int) -> tuple[Dataset, Dataset, Dataset]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = _mnist()
    pick = np.random.default_rng(100 + seed).permutation(len(y))[:2000]
    unl, test = _halves(y[pick], seed)
    return (from_arrays(d.images, d.target, value_max=16), from_arrays(x[pick[unl]], y[pick[unl]]),
            from_arrays(x[pick[test]], y[pick[test]]))


def framed(images: np.ndarray, pad: int = 2) -> np.ndarray:
    """8x8 digits fill their frame; MNIST digits sit in a 20 px box of 28 px. A 2 px border (8 -> 12 px, the
    digit covers 67% of the side, MNIST 71%) matches the framing, the preprocessing a careful user would do."""
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))


def study_a_framed(seed: int) -> tuple[Dataset, Dataset, Dataset]:
    src, unl, test = study_a(seed)
    return src, from_arrays(framed(unl.inputs), unl.y, value_max=16), from_arrays(framed(test.inputs), test.y,
                                                                                  value_max=16)


def study_b_framed(seed: int) -> tuple[Dataset, Dataset, Dataset]:
    src, unl, test = study_b(seed)
    return from_arrays(framed(src.inputs), src.y, value_max=16), unl, test


def study_c(seed: int) -> tuple[Dataset, Dataset, Dataset]:
    rows = [json.loads(line) for line in gzip.open(DATA / "spamassassin.jsonl.gz", "rt", encoding="utf-8")]
    old = [r for r in rows if r["group"] in ("easy-ham-1", "spam-1")]
    new = [r for r in rows if r["group"] in ("easy-ham-2", "hard-ham-1", "spam-2")]

    def ds(rs: list[dict]) -> Dataset:
        return Dataset("text", [f"{r['subject']}\n{r['body']}" for r in rs],
                       np.asarray([r["label"] for r in rs], dtype=object), origin="spamassassin")

    target = ds(new)
    unl, test = _halves(target.y, 0)  # one split for all seeds: the frozen features are extracted once
    return ds(old), target.subset(unl), target.subset(test)


STUDIES = {
    "A": ("MNIST -> digits (scratch:cnn, 28 px, end to end)", study_a,
          dict(backbone="scratch:cnn", image_size=28, epochs=2, batch_size=32, lr=1e-3)),
    "B": ("digits -> MNIST (scratch:cnn, 28 px, end to end)", study_b,
          dict(backbone="scratch:cnn", image_size=28, epochs=2, batch_size=32, lr=1e-3)),
    # A stronger source model: MNIST-like framing and a longer schedule (4 epochs at lr 2e-3 instead of 2 at 1e-3).
    # With the short schedule the framed source-only model still scored 0.11 on digits (seed 0): it had not
    # trained long enough to generalise beyond MNIST.
    "Af": ("MNIST -> digits framed like MNIST (2 px border; scratch:cnn, 28 px, 4 epochs, lr 2e-3)", study_a_framed,
           dict(backbone="scratch:cnn", image_size=28, epochs=4, batch_size=32, lr=2e-3)),
    "Bf": ("digits framed like MNIST -> MNIST (scratch:cnn, 28 px, 4 epochs, lr 2e-3)", study_b_framed,
           dict(backbone="scratch:cnn", image_size=28, epochs=4, batch_size=32, lr=2e-3)),
    "C": ("SpamAssassin old -> new (frozen MiniLM-L6 features + MLP bottleneck)", study_c,
          dict(backbone="packaged:minilm-l6", max_length=128, features="frozen", epochs=5, batch_size=32, lr=1e-3,
               trade_offs=[0.3, 1.0, 3.0])),
}


def run_cell(key: str, seed: int, method: str, data, settings: dict, baseline, out: Path):
    cfg = AdaptConfig(method=method, seed=seed, num_threads=1, checkpoints=3, plot_points=300 if seed == 0 else 0,
                      runs_dir=str(out / "runs"), name=f"s{seed}-{method.replace('+', '_')}", overwrite=True,
                      **settings)
    t0 = time.perf_counter()
    r = adapt(cfg, *data, progress=False, save=(seed == 0), baseline=baseline)
    cell = {"study": key, "seed": seed, "method": method, "seconds": time.perf_counter() - t0,
            "accuracy": r.metrics["adapted"]["accuracy"], "macro_f1": r.metrics["adapted"]["macro_f1"],
            "source_only_accuracy": r.metrics["source_only"]["accuracy"],
            "source_only_macro_f1": r.metrics["source_only"]["macro_f1"],
            "a_distance": r.metrics["a_distance"], "oracle": r.metrics["oracle"],
            "candidates": r.candidates,
            "source_only_candidates": [{k: v for k, v in c.items() if k not in ("state", "test_probs")}
                                       for c in r.baseline.candidates]}
    return cell, r.baseline


def ms(v: list[float]) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def table(cells: list[dict]) -> list[str]:
    seeds = sorted({c["seed"] for c in cells})
    by = {(c["method"], c["seed"]): c for c in cells}
    base = {s: by[("source-only", s)] for s in seeds if ("source-only", s) in by}
    lines = ["| method | target accuracy | target macro-F1 | Δ accuracy vs source-only | beats source-only? | "
             "proxy A-distance before → after | oracle-checkpoint accuracy | wall s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        cs = [by[(m, s)] for s in seeds if (m, s) in by]
        if not cs:
            continue
        if "not_applicable" in cs[0]:
            lines.append(f"| {m} | n/a | n/a | | not applicable: {cs[0]['not_applicable']} | | | |")
            continue
        acc = [c["accuracy"] for c in cs]
        f1 = [c["macro_f1"] for c in cs]
        delta = [c["accuracy"] - base[c["seed"]]["accuracy"] for c in cs if c["seed"] in base]
        if m == "source-only":
            verdict = "(baseline)"
        else:
            mean, sd = float(np.mean(delta)), float(np.std(delta))
            wins = sum(d > 0 for d in delta)
            verdict = (f"**yes** ({wins}/{len(delta)} seeds)" if mean > sd and wins == len(delta) else
                       f"no, worse ({wins}/{len(delta)} seeds better)" if mean < 0 else
                       f"not clearly ({wins}/{len(delta)} seeds better)")
        ad = f"{np.mean([c['a_distance']['before'] for c in cs]):.2f} → {np.mean([c['a_distance']['after'] for c in cs]):.2f}"
        orc = [c["oracle"]["adapted"]["accuracy"] for c in cs]
        lines.append(f"| {m} | {ms(acc)} | {ms(f1)} | {'' if m == 'source-only' else ms(delta)} | {verdict} | "
                     f"{ad} | {ms(orc)} | {np.mean([c['seconds'] for c in cs]):.0f} |")
    return lines


def summary(cells: list[dict]) -> str:
    """One computed sentence: the best method and the methods that do not clearly beat source-only."""
    seeds = sorted({c["seed"] for c in cells})
    by = {(c["method"], c["seed"]): c for c in cells}
    rows = []
    for m in METHODS:
        if m == "source-only" or not all((m, s) in by and ("source-only", s) in by for s in seeds):
            continue
        d = [by[(m, s)]["accuracy"] - by[("source-only", s)]["accuracy"] for s in seeds]
        acc = float(np.mean([by[(m, s)]["accuracy"] for s in seeds]))
        rows.append((m, acc, float(np.mean(d)), float(np.std(d)), all(x > 0 for x in d)))
    if not rows:
        return ""
    best = max(rows, key=lambda r: r[1])
    clear = [r[0] for r in rows if r[4] and r[2] > r[3]]
    not_clear = [r[0] for r in rows if not (r[4] and r[2] > r[3])]
    return (f"**Best: {best[0]}** ({best[1]:.3f} target accuracy, {best[2]:+.3f} ± {best[3]:.3f} over source-only). "
            f"Clearly beat source-only: {', '.join(clear) or 'none'}. "
            f"Do not clearly beat source-only: {', '.join(not_clear) or 'none'}.")


def selection_table(cells: list[dict]) -> list[str]:
    """For each criterion: the target accuracy it achieves (mean over all cells) vs the oracle checkpoint."""
    lines = ["| criterion | mean target accuracy of the chosen checkpoint | gap to oracle | picks the oracle's checkpoint |",
             "|---|---|---|---|"]
    orc_acc = []
    for c in cells:
        cand = c["candidates"]
        orc_acc.append(cand[oracle(cand)]["oracle"]["accuracy"])
    for crit in CRITERIA:
        accs, hits = [], 0
        for c in cells:
            cand = c["candidates"]
            i = choose(cand, crit)
            accs.append(cand[i]["oracle"]["accuracy"])
            hits += cand[i]["oracle"]["accuracy"] >= cand[oracle(cand)]["oracle"]["accuracy"] - 1e-12
        lines.append(f"| `{crit}` | {np.mean(accs):.4f} | {np.mean(accs) - np.mean(orc_acc):+.4f} | "
                     f"{hits}/{len(cells)} |")
    lines.append(f"| oracle (peeks at target test labels) | {np.mean(orc_acc):.4f} | 0 | {len(cells)}/{len(cells)} |")
    return lines


def method_choice(cells: list[dict], criterion: str = "dev") -> list[str]:
    """Choosing the method itself per seed, from all methods' candidates pooled, by the criterion vs oracle."""
    out = []
    for s in sorted({c["seed"] for c in cells}):
        pool = [(c["method"], x) for c in cells if c["seed"] == s for x in c["candidates"]]
        i = choose([x for _, x in pool], criterion)
        j = oracle([x for _, x in pool])
        out.append(f"seed {s}: `{criterion}` picks {pool[i][0]} (target acc {pool[i][1]['oracle']['accuracy']:.3f}); "
                   f"oracle {pool[j][0]} ({pool[j][1]['oracle']['accuracy']:.3f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="A,Af,B,Bf,C")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--report-only", action="store_true", help="tables from the saved cells only; run nothing")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    sections: list[str] = []
    missing: list[str] = []
    for key in [k.strip() for k in args.only.split(",") if k.strip()]:
        title, make, settings = STUDIES[key]
        out = OUT / key
        (out / "cells").mkdir(parents=True, exist_ok=True)
        cells: list[dict] = []
        for seed in seeds:
            data, baseline = None, None
            for method in methods:
                path = out / "cells" / f"s{seed}-{method.replace('+', '_')}.json"
                if path.exists():
                    cells.append(json.loads(path.read_text()))
                    continue
                if args.report_only:
                    missing.append(f"{key} seed {seed} {method}")
                    continue
                data = data or make(seed)
                try:
                    cell, baseline = run_cell(key, seed, method, data, settings, baseline, out)
                except ConfigError as e:  # e.g. adabn on a network without BatchNorm: say so in the table
                    cell = {"study": key, "seed": seed, "method": method, "not_applicable": str(e)}
                    path.write_text(json.dumps(cell))
                    cells.append(cell)
                    print(f"{key} seed {seed} {method:<14} not applicable: {e}", flush=True)
                    continue
                path.write_text(json.dumps(cell, default=float))
                cells.append(cell)
                print(f"{key} seed {seed} {method:<14} acc {cell['accuracy']:.4f} (source-only "
                      f"{cell['source_only_accuracy']:.4f}) {cell['seconds']:.0f} s", flush=True)
        if not cells:
            continue
        s = settings
        sections += [f"### {key}. {title}", "",
                     f"Seeds {', '.join(map(str, seeds))}; {s['epochs']} epochs over the source, batch {s['batch_size']} "
                     f"per domain, lr {s['lr']:g}, trade-off {', '.join(f'{w:g}' for w in s.get('trade_offs', [1.0]))}"
                     f"{' (grid: trade-off and checkpoint' if s.get('trade_offs') else ' (checkpoint'} chosen by `dev`, "
                     "no target labels). "
                     "Target accuracy on the labelled target test half, mean ± std over seeds; Δ is paired per seed. "
                     "\"beats source-only\" = yes only if every seed improves and the mean gain exceeds its std. Wall time on "
                     "the shared machine (3 benchmark processes and other engineers' jobs), including the source-only "
                     "training (and, for text, the one-off MiniLM feature extraction) when a call had to do it.", ""]
        ran = [c for c in cells if "not_applicable" not in c]
        n_cand = 3 * len(s.get("trade_offs", [1.0]))
        sections += table(cells) + ["", summary(ran), "", "Model selection without target labels (all method × seed "
                                    f"runs above, up to {n_cand} candidates each):", ""] + selection_table(ran) + [""]
        sections += ["Choosing the method as well (all methods' checkpoints pooled per seed): "
                     + "; ".join(method_choice(ran)) + ".", ""]
    header = ["## Domain adaptation (issue 7)", "",
              f"Command: `HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_adapt.py` "
              f"({time.strftime('%Y-%m-%d')}, 2 shared CPU cores, 1 torch thread). Every method starts from the same "
              "initialisation and batch order as source-only for its seed.", "",
              "**Model selection without target labels.** Every training run keeps 3 evenly spaced checkpoints "
              "(and, with a trade-off grid, one run per weight); the reported model is the candidate chosen by "
              "`dev`, Deep Embedded Validation (You et al., ICML 2019): the source-validation cross-entropy "
              "importance-weighted by p(target|x)/p(source|x) from a logistic-regression domain classifier on that "
              "candidate's features, with the paper's control variate; lower is better. Also measured: "
              "`source-val` (source validation accuracy), `entropy` (source validation accuracy minus the "
              "normalised mean prediction entropy on target data) and `last` (no selection). The oracle peeks at "
              "the target test labels and is shown only to judge the criteria. The proxy A-distance is "
              "2(1 − 2·err) of a logistic-regression domain classifier on held-out features (300 source and 300 "
              "target examples): 2 = separable.", "",
              "**Reading the image tables.** MNIST digits sit in a 20-px box centred on a 28-px canvas, while "
              "upsampled 8x8 digits fill the frame, and a source-only CNN normalises target images with MNIST "
              "BatchNorm statistics. In A and B (short schedule: 2 epochs at lr 1e-3, digits unframed) source-only "
              "is therefore near chance, and AdaBN alone, which changes nothing but those statistics, recovers a "
              "large part of the gap. **Af is the fairer test**: digits get a 2-px border (MNIST-like framing, what "
              "a careful user would do) and the source CNN trains longer (4 epochs at lr 2e-3); source-only then "
              "reaches 0.36-0.74 depending on the seed (cf. the issue's 0.59), and the table shows which methods "
              "still help. With the short schedule, framing alone did not rescue source-only (seed 0: source-only 0.114, AdaBN "
              "0.758, CORAL 0.845, MMD 0.880, MCC 0.892; cells kept in benchmarks/out/adapt/Af-short). The A/B budgets are tiny next to TLlib's digit "
              "recipes (LeNet, 2,500 iterations of batch 128 for MNIST → USPS, where it reports DANN 91.7 and "
              "CDAN 96.0 against 82.1 source-only): about 110 steps of batch 32 per domain here, and the adversarial "
              "methods, whose reversal coefficient is still warming up, gain least or lose. The proxy A-distance "
              "stays near 2 for the CNN features, i.e. the domains remain linearly separable even when accuracy "
              "improves; it drops for CORAL and MMD, which align feature statistics directly. Text: adaptation "
              "acts only on a 256-d bottleneck over frozen MiniLM features, so there is little to gain.", ""]
    if missing:
        header += [f"Missing cells (not run): {', '.join(missing)}.", ""]
    text = "\n".join(header + sections)
    print(text)
    if not args.no_write:
        update_section(text, "adapt")


if __name__ == "__main__":
    main()
