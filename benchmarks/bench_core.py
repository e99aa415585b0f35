"""Core benchmarks (issue 3): accuracy and wall time of the main strategies, feature-extraction throughput
against a bare ``torch.inference_mode()`` forward, and the speed-up of a linear probe on cached features.

  1. digits (scikit-learn, 1,797 images) at 64 and 128 px: linear-probe, lp-ft, fine-tune with
     packaged:efficientnet_lite0, and fine-tune of scratch:cnn (3 epochs, seed 0): test macro-F1, wall time
  2. SpamAssassin (5,923 e-mails, text = subject + newline + body): linear probe with packaged:minilm-l6
     (max_length 128) on the full data set; fine-tune of minilm-l6 on a stratified subset
  3. extraction throughput: transferkit's extract_features (with and without building Inputs from raw data)
     vs a bare inference-mode loop over pre-built batches of the same model, batch size and threads
  4. cached linear probe: the same fit twice with the same FeatureCache directory

Usage (from the repository root, ~12 min on 2 idle cores):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_core.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_core.py --quick     # smoke test, writes nothing to BENCHMARKS.md

Writes the section between <!-- core:start --> and <!-- core:end --> of BENCHMARKS.md (other sections are
kept) and the raw numbers to benchmarks/out/core.json.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from transferkit.backbones import create_backbone  # noqa: E402
from transferkit.config import FitConfig  # noqa: E402
from transferkit.data import Dataset, from_arrays  # noqa: E402
from transferkit.features.extract import extract_features  # noqa: E402
from transferkit.features.inputs import Inputs  # noqa: E402
from transferkit.pipeline import fit  # noqa: E402
from transferkit.strategies import FeatureCache  # noqa: E402

T_START = time.perf_counter()
EFF, MINILM = "packaged:efficientnet_lite0", "packaged:minilm-l6"

# ---- timing hooks (benchmark-side wrappers around module globals; src/ is not modified) -------------------
import importlib  # noqa: E402
from markdown_blocks import update_section  # noqa: E402

_pl = importlib.import_module("transferkit.pipeline")
_lp = importlib.import_module("transferkit.baselines.linear")  # the one C-grid search (probe, hybrid, classical)

BASE: dict = {}  # extra FitConfig fields (only --quick sets one: a 1-value probe grid)
TIMES: dict[str, float] = {}
PROBE_FITS: list[dict] = []


def _timed(name: str, fn):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            TIMES[name] = TIMES.get(name, 0.0) + time.perf_counter() - t0
    return wrapper


_pl.create_backbone = _timed("backbone_load", _pl.create_backbone)
_pl.evaluate_model = _timed("evaluate_val_test", _pl.evaluate_model)


class _TimedLogReg(_lp.LogisticRegression):
    """Records seconds and iterations of every logistic-regression fit of the probe's C grid."""

    def fit(self, X, y, sample_weight=None):
        t0 = time.perf_counter()
        out = super().fit(X, y, sample_weight)
        PROBE_FITS.append({"C": self.C, "seconds": time.perf_counter() - t0, "n_iter": int(np.max(self.n_iter_)),
                           "n": int(X.shape[0]), "d": int(X.shape[1])})
        return out


_lp.LogisticRegression = _TimedLogReg


# ----------------------------------------------------------------------------------------------- helpers
def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f}s] {msg}", flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def src_version() -> str:
    """The commit measured, flagged when src/ has uncommitted changes."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return f"commit {head}" + (" + uncommitted src/ changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"


def digits_dataset() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return from_arrays(d.images, d.target)


def spam_dataset() -> Dataset:
    with gzip.open(DATA / "spamassassin.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    texts = [f"{r['subject']}\n{r['body']}" for r in rows]
    return Dataset("text", texts, np.array([r["label"] for r in rows], dtype=object), origin="spamassassin")


def stratified_pick(y: np.ndarray, sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    """Disjoint stratified index sets of the given sizes."""
    from sklearn.model_selection import train_test_split

    rest, out = np.arange(len(y)), []
    for n in sizes:
        if n >= len(rest):
            out.append(rest)
            rest = rest[:0]
            continue
        take, rest = train_test_split(rest, train_size=n, stratify=y[rest], random_state=seed)
        out.append(np.sort(take))
    return out


def timed_fit(cfg: FitConfig, train: Dataset, cache_dir: Path, val: Dataset | None = None,
              test: Dataset | None = None) -> dict:
    TIMES.clear()
    PROBE_FITS.clear()
    t0 = time.perf_counter()
    r = fit(cfg, train=train, val=val, test=test, save=False, progress=False, cache=FeatureCache(cache_dir))
    wall = time.perf_counter() - t0
    d = r.details
    rec = {"backbone": cfg.backbone, "strategy": cfg.strategy, "image_size": cfg.image_size,
           "max_length": cfg.max_length, "epochs": cfg.training.epochs, "lr": cfg.training.lr, "batch_size": cfg.training.batch_size,
           "macro_f1": r.metrics["macro_f1"], "accuracy": r.metrics["accuracy"], "wall_s": wall,
           "sizes": d.get("sizes"), "preprocess_s": d.get("preprocess_seconds"), "strategy_s": d.get("fit_seconds")}
    probe = d.get("probe", d)  # lp-ft nests the probe report
    for k in ("extract_seconds", "probe_seconds", "cache_hits", "cache_misses", "chosen_C"):
        if k in probe:
            rec[k] = probe[k]
    rec["backbone_load_s"] = TIMES.get("backbone_load", 0.0)
    rec["evaluate_s"] = TIMES.get("evaluate_val_test", 0.0)  # evaluate_model on val and test after fitting
    # feature work through the cache (extraction or look-up; for the linear probe also the test part and the
    # head applied to cached features): the strategy step minus the C grid (and minus training for lp-ft)
    if cfg.strategy == "linear-probe":
        rec["features_s"] = rec["strategy_s"] - rec.get("probe_seconds", 0.0)
    else:
        rec["features_s"] = rec.get("extract_seconds")
    rec["other_s"] = wall - sum(rec[k] or 0 for k in ("preprocess_s", "strategy_s", "backbone_load_s", "evaluate_s"))
    rec["probe_fits"] = list(PROBE_FITS)
    return rec


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


# ------------------------------------------------------------------------------------- 1. digits fits
def bench_digits(args, res: dict, tmp: Path) -> None:
    ds = digits_dataset()
    if args.quick:
        ds = ds.subset(np.arange(300))
    runs = []
    for size in args.sizes:
        for backbone, strategy in ((EFF, "linear-probe"), (EFF, "lp-ft"), (EFF, "fine-tune"),
                                   ("scratch:cnn", "fine-tune")):
            cfg = FitConfig.from_dict(dict(backbone=backbone, strategy=strategy, image_size=size, epochs=args.epochs, seed=0,
                            num_threads=args.threads, **BASE))
            cache_dir = tmp / f"digits-{size}-{strategy}-{backbone.split(':')[1]}"  # cold cache per fit
            rec = timed_fit(cfg, ds, cache_dir)
            rec["cache_dir"] = str(cache_dir)
            runs.append(rec)
            say(f"digits {size}px {backbone} {strategy}: macro-F1 {rec['macro_f1']:.4f}, {rec['wall_s']:.1f} s")
    res["digits"] = {"n": len(ds), "runs": runs}


# -------------------------------------------------------------------------------------- 2. spam fits
def spam_probe_data(args, spam: Dataset) -> Dataset:
    if args.quick:  # the file is grouped (ham first): take a stratified sample
        return spam.subset(stratified_pick(spam.y, [400], seed=0)[0])
    return spam


def bench_spam(args, res: dict, tmp: Path, spam: Dataset) -> None:
    full = spam_probe_data(args, spam)
    cfg = FitConfig(backbone=MINILM, strategy="linear-probe", max_length=128, seed=0, num_threads=args.threads, **BASE)
    lp = timed_fit(cfg, full, tmp / "spam-lp")
    lp["cache_dir"] = str(tmp / "spam-lp")
    say(f"spam linear probe (n={len(full)}): macro-F1 {lp['macro_f1']:.4f}, {lp['wall_s']:.1f} s")
    res["spam"] = {"n": len(full), "linear_probe": lp}
    if args.ft_train <= 0:
        return
    tr, va, te = stratified_pick(spam.y, [args.ft_train, args.ft_val, args.ft_test], seed=0)
    extra = {"min_steps": 0} if "min_steps" in {f.name for f in fields(FitConfig)} else {}  # exactly 1 pass
    cfg = FitConfig.from_dict(dict(backbone=MINILM, strategy="fine-tune", max_length=128, epochs=1, batch_size=16,
                    lr=args.ft_lr, seed=0, num_threads=args.threads, **extra, **BASE))
    ft = timed_fit(cfg, spam.subset(tr), tmp / "spam-ft", val=spam.subset(va), test=spam.subset(te))
    ft["train_examples_per_s"] = len(tr) / max(ft["strategy_s"], 1e-9)  # includes one validation pass
    say(f"spam fine-tune ({len(tr)}/{len(va)}/{len(te)}): macro-F1 {ft['macro_f1']:.4f}, {ft['wall_s']:.1f} s")
    res["spam"]["fine_tune"] = ft


# -------------------------------------------------------------------------------- 3. throughput
def _usage() -> tuple[float, float, int]:
    """(process CPU seconds, kernel CPU seconds, minor page faults) so far, for all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), r.ru_stime, r.ru_minflt


def _delta(u0: tuple, u1: tuple) -> dict:
    return {"cpu_s": u1[0] - u0[0], "sys_s": u1[1] - u0[1], "minflt": u1[2] - u0[2]}


def _bare(backbone, batches) -> tuple[float, dict]:
    """Seconds (and CPU / page-fault counts) for a bare inference-mode forward over pre-built batches."""
    with torch.inference_mode():
        u0, t0 = _usage(), time.perf_counter()
        for b in batches:
            backbone(b)
        return time.perf_counter() - t0, _delta(u0, _usage())


def _pipeline(backbone, ds: Dataset, bs: int) -> tuple[float, float, np.ndarray, dict]:
    """(seconds building Inputs from the raw data, seconds in extract_features, features, usage of the latter)."""
    t0 = time.perf_counter()
    inputs = Inputs(ds, backbone)
    u0, t1 = _usage(), time.perf_counter()
    feats = extract_features(backbone, inputs, bs, progress=False)
    return t1 - t0, time.perf_counter() - t1, feats, _delta(u0, _usage())


def _assembly(inputs: Inputs, bs: int) -> float:
    """Seconds the pipeline spends building batches (index + normalise, or pad) without any forward."""
    t0 = time.perf_counter()
    for idx in inputs.order(bs, shuffle=False):
        inputs.batch(idx)
    return time.perf_counter() - t0


def _alternate(bb, chunks: list[dict], bs: int, rounds: int, label: str) -> dict:
    """For each round and each chunk of the data: pipeline, then the bare loop(s) on the same chunk, so that
    every path sees the same machine load (the machine is shared). Returns per-round totals."""
    names = ["inputs", "pipeline"] + [k for k in chunks[0] if k.startswith("bare")]
    per_round = []
    usage = {k: {"cpu_s": 0.0, "sys_s": 0.0, "minflt": 0} for k in names[1:]}
    for r in range(rounds):
        tot = dict.fromkeys(names, 0.0)
        for ch in chunks:
            t_in, t_ex, feats, u = _pipeline(bb, ch["ds"], bs)
            tot["inputs"] += t_in
            tot["pipeline"] += t_ex
            ch["feats"] = feats
            for key in u:
                usage["pipeline"][key] += u[key]
            for k in names[2:]:
                t_b, u = _bare(bb, ch[k])
                tot[k] += t_b
                for key in u:
                    usage[k][key] += u[key]
        per_round.append(tot)
        n = sum(len(ch["ds"]) for ch in chunks)
        say(f"{label} round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {n / v:.1f}/s" for k, v in tot.items() if k != "inputs") + f" (Inputs {tot['inputs']:.2f} s)")
    out = {k: [t[k] for t in per_round] for k in names}
    out["usage"] = usage  # summed over all rounds
    return out


def _summary(t: dict, n: int) -> dict:
    """Best round of each path (least disturbed by other jobs) and the ratios."""
    usage = t.pop("usage")
    rounds = len(t["pipeline"])
    best = {k: min(v) for k, v in t.items()}
    out = {"rounds_s": t, "n": n, "usage": usage,
           "faults_per_sample": {k: u["minflt"] / (n * rounds) for k, u in usage.items()},
           "sys_share_of_cpu": {k: u["sys_s"] / max(u["cpu_s"], 1e-9) for k, u in usage.items()}}
    out["pipeline_per_s"] = n / best["pipeline"]
    out["pipeline_with_inputs_per_s"] = n / min(a + b for a, b in zip(t["inputs"], t["pipeline"]))
    for k in t:
        if k.startswith("bare"):
            out[f"{k}_per_s"] = n / best[k]
            out[f"ratio_{k}"] = out["pipeline_per_s"] / out[f"{k}_per_s"]
            out[f"ratio_with_inputs_{k}"] = out["pipeline_with_inputs_per_s"] / out[f"{k}_per_s"]
            out[f"ratio_{k}_per_round"] = [b / p for p, b in zip(t["pipeline"], t[k])]
    return out


def _overhead_estimate(out: dict, bare: str) -> None:
    """The pipeline does the bare forward plus batch assembly (and Inputs construction): the ratio those
    measured costs imply, which machine load cannot inflate or deflate the way it does the timed rounds."""
    tb = out["n"] / out[f"{bare}_per_s"]
    out["ratio_from_overhead"] = tb / (tb + out["assembly_s"])
    out["ratio_with_inputs_from_overhead"] = tb / (tb + out["assembly_s"] + min(out["rounds_s"]["inputs"]))


def bench_throughput_image(args, res: dict) -> None:
    bs, size = 64, 128
    ds = digits_dataset()
    if args.quick:
        ds = ds.subset(np.arange(256))
    bb = create_backbone(EFF, image_size=size).eval()
    chunks = []
    for part in np.array_split(np.arange(len(ds)), args.chunks):
        cds = ds.subset(part)
        x = Inputs(cds, bb).batch(np.arange(len(cds)))  # the pipeline's preprocessing, done beforehand
        chunks.append({"ds": cds, "bare": [x[s:s + bs] for s in range(0, len(cds), bs)]})
    with torch.inference_mode():  # warm-up both paths
        bb(chunks[0]["bare"][0])
    extract_features(bb, Inputs(ds.subset(np.arange(bs)), bb), bs, progress=False)
    t = _alternate(bb, chunks, bs, args.reps, "image throughput")
    out = {"model": EFF, "image_size": size, "batch_size": bs, "threads": torch.get_num_threads(),
           "chunks": args.chunks, **_summary(t, len(ds))}
    out["assembly_s"] = sum(_assembly(Inputs(ch["ds"], bb), bs) for ch in chunks)
    with torch.inference_mode():
        ref = bb(chunks[0]["bare"][0]).numpy()
    out["max_abs_diff"] = float(np.abs(chunks[0]["feats"][:len(ref)] - ref).max())
    _overhead_estimate(out, "bare")
    res["throughput_image"] = out


MALLOC_TUNED = ("glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184:"
                "glibc.malloc.top_pad=268435456")


def malloc_child(n: int, threads: int) -> None:
    """Child process: bare forward and pipeline on n digits at 128 px; prints one JSON line."""
    torch.set_num_threads(threads)
    bs = 64
    ds = digits_dataset().subset(np.arange(n))
    bb = create_backbone(EFF, image_size=128).eval()
    x = Inputs(ds, bb).batch(np.arange(n))
    batches = [x[s:s + bs] for s in range(0, n, bs)]
    _bare(bb, batches[:1])
    extract_features(bb, Inputs(ds.subset(np.arange(bs)), bb), bs, progress=False)
    out = {}
    for _ in range(2):
        t, u = _bare(bb, batches)
        if t < out.get("bare_s", 1e9):
            out.update(bare_s=t, bare_minflt=u["minflt"] / n, bare_sys_share=u["sys_s"] / max(u["cpu_s"], 1e-9))
        _, t, _, u = _pipeline(bb, ds, bs)
        if t < out.get("pipeline_s", 1e9):
            out.update(pipeline_s=t, pipeline_minflt=u["minflt"] / n,
                       pipeline_sys_share=u["sys_s"] / max(u["cpu_s"], 1e-9))
    out.update(bare_per_s=n / out["bare_s"], pipeline_per_s=n / out["pipeline_s"])
    print("MALLOC_CHILD " + json.dumps(out), flush=True)


def bench_malloc(args, res: dict) -> None:
    """The same bare forward and pipeline with glibc's default malloc and with malloc tunables that keep freed
    memory in the process (fewer page faults), in child processes, alternated."""
    import subprocess

    n = 128 if args.quick else 640
    runs: dict[str, list[dict]] = {"default": [], "tuned": []}
    for _ in range(2):
        for name in runs:
            env = dict(os.environ)
            env.pop("GLIBC_TUNABLES", None)
            if name == "tuned":
                env["GLIBC_TUNABLES"] = MALLOC_TUNED
            p = subprocess.run([sys.executable, __file__, "--malloc-child", str(n), "--threads", str(args.threads)],
                               env=env, capture_output=True, text=True, check=True)
            line = next(ln for ln in p.stdout.splitlines() if ln.startswith("MALLOC_CHILD "))
            runs[name].append(json.loads(line.split(" ", 1)[1]))
    best = {k: max(v, key=lambda r: r["bare_per_s"]) for k, v in runs.items()}
    res["malloc"] = {"n": n, "tunables": MALLOC_TUNED, "runs": runs, "best": best,
                     "bare_speedup": best["tuned"]["bare_per_s"] / best["default"]["bare_per_s"]}
    say(f"malloc check: bare {best['default']['bare_per_s']:.1f}/s -> {best['tuned']['bare_per_s']:.1f}/s, pipeline "
        f"{best['default']['pipeline_per_s']:.1f}/s -> {best['tuned']['pipeline_per_s']:.1f}/s with GLIBC_TUNABLES")


def bench_throughput_text(args, res: dict, spam: Dataset) -> None:
    bs, ml = 32, 128
    idx = np.sort(np.random.default_rng(0).choice(len(spam), min(args.tp_texts, len(spam)), replace=False))
    ds = spam.subset(idx)
    bb = create_backbone(MINILM, max_length=ml).eval()
    tok = bb.preprocess.tokenizer

    def enc(texts, padding):
        e = tok(texts, padding=padding, truncation=True, max_length=ml, return_tensors="pt")
        return {"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]}

    chunks, lens = [], []
    for part in np.array_split(np.arange(len(ds)), args.chunks):
        cds = ds.subset(part)
        inputs = Inputs(cds, bb)
        lens.append(inputs.lengths())
        texts = list(cds.inputs)
        chunks.append({"ds": cds, "order": inputs.order(bs, shuffle=False),
                       # same length-sorted batches as the pipeline, padded to the longest in the batch
                       "bare_sorted": [enc([texts[i] for i in b], True) for b in inputs.order(bs, shuffle=False)],
                       # what a user would write: dataset order, every batch padded to max_length
                       "bare_naive": [enc(texts[s:s + bs], "max_length") for s in range(0, len(texts), bs)]})
    with torch.inference_mode():  # warm-up
        bb(chunks[0]["bare_sorted"][-1])
    t = _alternate(bb, chunks, bs, args.text_reps, "text throughput")
    lens = np.concatenate(lens)
    out = {"model": MINILM, "max_length": ml, "batch_size": bs, "threads": torch.get_num_threads(),
           "chunks": args.chunks, "mean_tokens": float(lens.mean()), "share_truncated": float((lens >= ml).mean()),
           **_summary(t, len(ds))}
    out["assembly_s"] = sum(_assembly(Inputs(ch["ds"], bb), bs) for ch in chunks)
    with torch.inference_mode():
        ref = bb(chunks[0]["bare_sorted"][0]).numpy()
    out["max_abs_diff"] = float(np.abs(chunks[0]["feats"][chunks[0]["order"][0]] - ref).max())
    _overhead_estimate(out, "bare_sorted")
    res["throughput_text"] = out


# ---------------------------------------------------------------------------------- 4. cached probe
def bench_cached(args, res: dict, spam: Dataset) -> None:
    out = {}
    digits = digits_dataset().subset(np.arange(300)) if args.quick else digits_dataset()
    cfg = FitConfig.from_dict(dict(backbone=EFF, strategy="linear-probe", image_size=128, epochs=args.epochs, seed=0,
                    num_threads=args.threads, **BASE))
    first = timed_fit(cfg, digits, Path(args.tmp) / "cached-digits")  # empty cache directory
    second = timed_fit(cfg, digits, Path(args.tmp) / "cached-digits")  # right after, same directory
    say(f"cached probe digits: first {first['wall_s']:.1f} s, second {second['wall_s']:.1f} s")
    out["digits 128 px, efficientnet_lite0"] = {"first": first, "second": second}
    if "spam" in res and args.cached_spam and Path(res["spam"]["linear_probe"]["cache_dir"]).exists():
        first = res["spam"]["linear_probe"]  # section 2's full-data probe (its own empty cache directory)
        cfg = FitConfig(backbone=MINILM, strategy="linear-probe", max_length=128, seed=0, num_threads=args.threads, **BASE)
        second = timed_fit(cfg, spam_probe_data(args, spam), Path(first["cache_dir"]))
        say(f"cached probe spam: first {first['wall_s']:.1f} s, second {second['wall_s']:.1f} s")
        out[f"spam {res['spam']['n']:,} e-mails, minilm-l6"] = {"first": first, "second": second}
    for v in out.values():
        a, b = v["first"], v["second"]
        v["speedup"] = a["wall_s"] / b["wall_s"]
        v["strategy_speedup"] = a["strategy_s"] / b["strategy_s"]
        # what a fit would cost if it did only what the cache makes unnecessary to repeat: everything except
        # the feature extraction (i.e. the achievable floor of the second fit as fit() is structured today)
        v["extraction_share_first"] = a["features_s"] / a["wall_s"]
        v["first_without_extraction_s"] = a["wall_s"] - a["features_s"]
    res["cached"] = out


# ------------------------------------------------------------------------------------------ report
def f1(v: float) -> str:
    return f"{v:.4f}"


def s(v: float) -> str:
    return f"{v:.1f}"


def grid_note(rec: dict) -> str:
    fits = rec.get("probe_fits") or []
    if not fits:
        return ""
    return ", ".join(f"C={f['C']:g}: {f['seconds']:.1f} s/{f['n_iter']} it" for f in fits)


def render(res: dict) -> str:
    m = res["machine"]
    L = ["## Core (issue 3)", "",
         f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_core.py` "
         f"(run {m['date']} on {m.get('src', 'an unrecorded src version')}; "
         f"{m.get('total_s', float('nan')) / 60:.1f} min in all)."
         + "".join(f" Steps `{r['steps']}` re-measured on {r['date']} on {r.get('src', '?')} with "
                   f"`--only {r['steps']} --merge` ({r['total_s'] / 60:.1f} min, load average {r['load_start']} -> "
                   f"{r['load_end']}); their sections below carry those numbers."
                   for r in res.get("remeasured", [])), "",
         f"Machine: {m['cores']} CPU cores ({m['cpu']}), no GPU; torch {m['torch']} with "
         f"{m['torch_threads']} intra-op threads for every measurement (`torch.get_num_threads()` checked after "
         f"each step), Python {m['python']}. The machine was shared with other jobs during the run (load average "
         f"1/5/15 min: {m['load_start']} at the start, {m['load_end']} at the end, on 2 cores), so absolute times "
         "are slower and noisier than on an idle machine; each ratio compares paths measured in the same process, "
         "alternated chunk by chunk, at the same thread count.", "",
         "Raw numbers: `benchmarks/out/core.json`. Test macro-F1 is on the held-out test part (stratified "
         "70/15/15 split, seed 0, unless stated). Wall time is the whole `fit(...)` call with `save=False, "
         "progress=False` (backbone creation, preprocessing, the strategy, and the forward passes that evaluate the "
         "validation and test parts), each with a fresh `FeatureCache` directory unless stated.", ""]
    if "digits" in res:
        d = res["digits"]
        r0 = d["runs"][0]["sizes"]
        L += ["### 1. Digits (scikit-learn, 1,797 8x8 images upscaled)", "",
              f"`fit(FitConfig(backbone=..., strategy=..., image_size=..., epochs={res['args']['epochs']}, seed=0), "
              f"train=from_arrays(digits.images, digits.target), save=False, progress=False, "
              f"cache=FeatureCache(tmp))`; split train {r0['train']} / val {r0['val']} / test {r0['test']}; "
              "other settings default (batch 32, lr 1e-3, layer decay 0.85, patience 3, min_steps 100, which "
              "3 epochs x 40 batches already exceed; lp-ft fine-tunes at lr/10). The extraction and training "
              "columns are wall time too, so they carry the machine's load at that moment.",
              ""]
        L += table(["backbone", "strategy", "image size", "test macro-F1", "wall time (s)",
                    "of which: extraction / LR grid / training / eval forwards (s)"],
                   [[r["backbone"], r["strategy"], r["image_size"], f1(r["macro_f1"]), s(r["wall_s"]),
                     " / ".join(s(x) if x is not None else "-" for x in (
                         r.get("features_s"), r.get("probe_seconds"),
                         (r["strategy_s"] - (r.get("features_s") or 0) - (r.get("probe_seconds") or 0))
                         if r["strategy"] != "linear-probe" else None, r["evaluate_s"]))]
                    for r in d["runs"]])
        L.append("")
    if "spam" in res:
        lp, ft = res["spam"]["linear_probe"], res["spam"].get("fine_tune")
        L += ["### 2. SpamAssassin (text = subject + newline + body, label spam/ham)", ""]
        rows = [[MINILM, "linear-probe", f"all {res['spam']['n']:,} e-mails, split "
                 f"{lp['sizes']['train']} / {lp['sizes']['val']} / {lp['sizes']['test']}",
                 "max_length 128, C chosen on val", f1(lp["macro_f1"]), s(lp["wall_s"])]]
        if ft:
            rows.append([MINILM, "fine-tune", f"stratified subset {ft['sizes']['train']} / {ft['sizes']['val']} / "
                         f"{ft['sizes']['test']} (disjoint, seed 0)",
                         f"max_length 128, 1 epoch (min_steps 0), batch 16, lr {ft['lr']:g}", f1(ft["macro_f1"]), s(ft["wall_s"])])
        L += table(["backbone", "strategy", "data (train / val / test)", "settings", "test macro-F1",
                    "wall time (s)"], rows)
        L += ["", f"Linear probe breakdown: backbone load {s(lp['backbone_load_s'])} s, building `Inputs` "
              f"{s(lp['preprocess_s'])} s, features through the cache (extraction incl. tokenising) "
              f"{s(lp['features_s'])} s, logistic-regression grid {s(lp['probe_seconds'])} s, `evaluate_model` on "
              "val + test "
              f"evaluation {s(lp['evaluate_s'])} s."]
        if ft:
            L[-1] += (f" The fine-tune ran at {ft['train_examples_per_s']:.1f} training examples/s (one epoch + one "
                      "validation pass); its subset is small so that it stays within a few minutes on 2 cores, so "
                      "its F1 is not comparable with the full-data probe.")
        L.append("")
    ti, tt = res.get("throughput_image"), res.get("throughput_text")
    if ti or tt:
        L += ["### 3. Feature-extraction throughput (samples/s)", "",
              "Pipeline = `extract_features(backbone, Inputs(ds, backbone), batch_size, progress=False)`; "
              "\"+ Inputs\" also counts the `Inputs(...)` constructor (since `Inputs` became lazy it does no work: "
              "decoding + resizing to the uint8 store, or tokenising, happens on the first batch, inside the pipeline "
              "column). Bare = `with torch.inference_mode(): for b in batches: backbone(b)` over batches built "
              "beforehand, same model object, batch size and threads (images: the same normalised channels_last "
              "tensors; text: the tokenizer's output for the pipeline's own length-sorted batches, padded to the "
              "longest in the batch). Naive = the same bare loop with every batch padded to max_length in dataset "
              f"order, what a user would typically write. The data are cut into {(ti or tt)['chunks']} chunks and, "
              "chunk by "
              "chunk, the pipeline and the bare loop(s) run back to back; the table gives the best round.", ""]
        rows = []
        if ti:
            rows.append([f"{EFF}, 128 px, digits", ti["batch_size"], ti["n"], s(ti["pipeline_per_s"]),
                         s(ti["pipeline_with_inputs_per_s"]), s(ti["bare_per_s"]), "-",
                         f"{ti['ratio_bare']:.1%}", f"{ti['ratio_with_inputs_bare']:.1%}"])
        if tt:
            rows.append([f"{MINILM}, max_length 128, spam", tt["batch_size"], tt["n"], s(tt["pipeline_per_s"]),
                         s(tt["pipeline_with_inputs_per_s"]), s(tt["bare_sorted_per_s"]), s(tt["bare_naive_per_s"]),
                         f"{tt['ratio_bare_sorted']:.1%} (vs naive {tt['ratio_bare_naive']:.1%})",
                         f"{tt['ratio_with_inputs_bare_sorted']:.1%} (vs naive {tt['ratio_with_inputs_bare_naive']:.1%})"])
        L += table(["model / data", "batch", "n", "pipeline", "pipeline + Inputs", "bare", "bare naive",
                    "pipeline / bare", "(pipeline + Inputs) / bare"], rows)
        L.append("")
        if ti:
            L.append(f"Images: {len(ti['rounds_s']['pipeline'])} rounds; per-round pipeline/bare ratio "
                     f"{', '.join(f'{v:.1%}' for v in ti['ratio_bare_per_round'])}. Building every batch without "
                     f"a forward (index the uint8 store, normalise, channels_last) takes {ti['assembly_s']:.2f} s "
                     f"for {ti['n']} images, Inputs construction {min(ti['rounds_s']['inputs']):.2f} s; pipeline "
                     f"and bare features agree to {ti['max_abs_diff']:.1e}. Adding those measured costs to the "
                     f"best bare time gives {ti['ratio_from_overhead']:.1%} (extraction) and "
                     f"{ti['ratio_with_inputs_from_overhead']:.1%} (with Inputs); the timed ratio differs from this "
                     "estimate by what the pipeline costs beyond building batches in isolation, plus noise from the "
                     "other jobs on the machine." + usage_note(ti))
        if tt:
            L.append(f"Text: {tt['n']} e-mails sampled with seed 0, mean {tt['mean_tokens']:.0f} tokens after "
                     f"truncation, {tt['share_truncated']:.0%} cut at 128, so length sorting saves little padding "
                     f"here; tokenising them (Inputs) takes {min(tt['rounds_s']['inputs']):.2f} s and padding all "
                     f"batches {tt['assembly_s']:.2f} s; per-round pipeline/bare ratio "
                     f"{', '.join(f'{v:.1%}' for v in tt['ratio_bare_sorted_per_round'])}; features agree to "
                     f"{tt['max_abs_diff']:.1e}; from those measured costs alone the ratio would be "
                     f"{tt['ratio_from_overhead']:.1%} (extraction) and {tt['ratio_with_inputs_from_overhead']:.1%} "
                     "(with Inputs)." + usage_note(tt))
        mc = res.get("malloc")
        if mc:
            d, t = mc["best"]["default"], mc["best"]["tuned"]
            L.append(f"Memory allocator (child processes, first {mc['n']} digits, same model, batch 64 and threads, "
                     f"best of 2 alternated runs each): with glibc's default malloc the bare forward runs at "
                     f"{d['bare_per_s']:.1f}/s and the pipeline at {d['pipeline_per_s']:.1f}/s, with "
                     f"{d['bare_minflt']:,.0f} minor page faults per image and {d['bare_sys_share']:.0%} of CPU time in "
                     f"the kernel (bare); with `GLIBC_TUNABLES={mc['tunables']}` (freed memory stays in the process) "
                     f"{t['bare_per_s']:.1f}/s and {t['pipeline_per_s']:.1f}/s, {t['bare_minflt']:,.0f} faults per "
                     f"image, {t['bare_sys_share']:.0%} kernel time (pipeline/bare {t['pipeline_per_s'] / t['bare_per_s']:.1%}).")
        L.append("")
    if "cached" in res:
        L += ["### 4. Linear probe on cached features (the same fit twice, same `FeatureCache` directory)", "",
              "Digits: two fits back to back, the first on an empty cache directory. Spam: the first is the "
              "full-data probe of section 2, the second runs at the end of the script.", ""]
        rows = []
        for name, v in res["cached"].items():
            a, b = v["first"], v["second"]
            rows.append([name, s(a["wall_s"]), s(b["wall_s"]), f"{v['speedup']:.1f}x",
                         f"{s(a['strategy_s'])} -> {s(b['strategy_s'])} ({v['strategy_speedup']:.1f}x)",
                         f"{b.get('cache_hits')} hits / {b.get('cache_misses')} misses",
                         f"{s(b['backbone_load_s'])} / {s(b['preprocess_s'])} / {s(b['features_s'])} / "
                         f"{s(b['probe_seconds'])} / {s(b['evaluate_s'])}"])
        L += table(["data", "first fit (s)", "second fit (s)", "speed-up", "strategy step (s)", "second: cache",
                    "second fit: load / Inputs / cache look-up / LR grid / eval forwards (s)"], rows)
        for name, v in res["cached"].items():
            L.append("")
            L.append(f"LR grid of the second fit ({name}): {grid_note(v['second'])}.")
        L.append("")
    L += ["### Targets", ""] + targets(res)
    if res.get("notes"):
        L += ["", "### What limits the results", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(L) + "\n"


def usage_note(t: dict) -> str:
    if "faults_per_sample" not in t:
        return ""
    f, sh = t["faults_per_sample"], t["sys_share_of_cpu"]
    return (" Minor page faults per sample: " + ", ".join(f"{k} {v:,.0f}" for k, v in f.items())
            + "; kernel share of CPU time: " + ", ".join(f"{k} {v:.0%}" for k, v in sh.items()) + ".")


def targets(res: dict) -> list[str]:
    out = []
    for key, bare, label in (("throughput_image", "bare", "efficientnet_lite0 128 px, batch 64"),
                             ("throughput_text", "bare_sorted", "minilm-l6 max_length 128, batch 32")):
        t = res.get(key)
        if t:
            r = t[f"ratio_{bare}"]
            extra = (f"; with Inputs construction {t[f'ratio_with_inputs_{bare}']:.1%}; implied by the measured "
                     f"batch-assembly + Inputs overhead {t['ratio_from_overhead']:.1%} / "
                     f"{t['ratio_with_inputs_from_overhead']:.1%}")
            if "ratio_bare_naive" in t:
                extra += f"; against the naive max_length-padded loop {t['ratio_bare_naive']:.1%}"
            out.append(f"- target pipeline >= 90% of bare-forward throughput ({label}): "
                       f"**{'met' if r >= 0.9 else 'not met'}** (measured {r:.1%}{extra})")
    for name, v in res.get("cached", {}).items():
        out.append(f"- target second linear probe >= 20x faster than the first ({name}, whole `fit`): "
                   f"**{'met' if v['speedup'] >= 20 else 'not met'}** (measured {v['speedup']:.1f}x: "
                   f"{v['first']['wall_s']:.1f} s -> {v['second']['wall_s']:.1f} s; the strategy step alone "
                   f"{v['strategy_speedup']:.1f}x)")
    return out


def notes(res: dict) -> list[str]:
    n = []
    for name, v in res.get("cached", {}).items():
        a, b = v["first"], v["second"]
        if v["speedup"] >= 20:
            continue
        parts = sorted([("the logistic-regression C grid (`fit_probe`, refitted from scratch every time)",
                         b["probe_seconds"]),
                        ("`evaluate_model` on the validation and test parts", b["evaluate_s"]),
                        ("building `Inputs` for all parts",
                         b["preprocess_s"]),
                        ("loading the backbone", b["backbone_load_s"]),
                        ("features through the cache (look-up: weights hash + data hash + np.load)", b["features_s"])],
                       key=lambda kv: -kv[1])
        n.append(f"Cached probe, {name}: the cache works ({b.get('cache_hits')} hits, features not recomputed; "
                 f"extraction was {a['features_s']:.1f} s = {v['extraction_share_first']:.0%} of the first "
                 f"fit), but the second fit still takes {b['wall_s']:.1f} s: "
                 + "; ".join(f"{k} {t:.1f} s" for k, t in parts) + ". Everything in the first fit except "
                 f"extraction took {v['first_without_extraction_s']:.1f} s, and a 20x speed-up needs the whole "
                 f"second fit under {a['wall_s'] / 20:.1f} s, so the rest of the fit has to shrink too.")
    mc = res.get("malloc")
    if mc and mc["bare_speedup"] > 1.2:
        d = mc["best"]["default"]
        n.append(f"Images, both paths: with glibc's default malloc, {d['bare_sys_share']:.0%} of the bare forward's CPU "
                 f"time goes to the kernel ({d['bare_minflt']:,.0f} minor page faults per image): freed activation "
                 "buffers are returned to the OS and faulted in again on the next batch. Keeping them in the "
                 f"process (`GLIBC_TUNABLES`, see section 3) made the bare forward {mc['bare_speedup']:.1f}x faster. "
                 "This is not pipeline overhead (it hits the bare loop equally), but transferkit could set it for "
                 "its users (e.g. `mallopt` at import or a documented environment variable).")
    for key, bare in (("throughput_image", "bare"), ("throughput_text", "bare_sorted")):
        t = res.get(key)
        if t and t[f"ratio_{bare}"] < 0.9:
            tp = min(t["rounds_s"]["pipeline"])
            msg = (f"{key}: the pipeline runs at {t[f'ratio_{bare}']:.1%} of the bare forward (per round "
                   f"{', '.join(f'{x:.1%}' for x in t[f'ratio_{bare}_per_round'])}). Building all batches without "
                   f"a forward (lazy decode + resize to the uint8 store, indexing, normalising, channels_last copy) "
                   f"takes {t['assembly_s']:.2f} s = {t['assembly_s'] / tp:.1%} of the pipeline's {tp:.2f} s")
            if "faults_per_sample" in t:
                f, sh = t["faults_per_sample"], t["sys_share_of_cpu"]
                msg += (f"; the rest of the gap comes with more page faults ({f['pipeline']:,.0f} vs {f[bare]:,.0f} "
                        f"per sample, kernel share of CPU {sh['pipeline']:.0%} vs {sh[bare]:.0%}): every batch "
                        "allocates fresh input tensors (the float copy, the normalised tensor and its channels_last "
                        "copy), which the default allocator hands back to the OS and faults in again")
            n.append(msg + ".")
    return n


# -------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes; a smoke test (writes core-quick.json only)")
    ap.add_argument("--only", default="digits,spam,throughput,cached")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--reps", type=int, default=3, help="rounds of the image throughput comparison")
    ap.add_argument("--text-reps", type=int, default=1, help="rounds of the text throughput comparison")
    ap.add_argument("--chunks", type=int, default=4, help="chunks the pipeline and bare loops alternate over")
    ap.add_argument("--no-cached-spam", dest="cached_spam", action="store_false",
                    help="skip the second (cached) spam probe")
    ap.add_argument("--tp-texts", type=int, default=1000)
    ap.add_argument("--ft-train", type=int, default=600)
    ap.add_argument("--ft-val", type=int, default=300)
    ap.add_argument("--ft-test", type=int, default=600)
    ap.add_argument("--ft-lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: CPU cores available)")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--merge", action="store_true",
                    help="start from benchmarks/out/core.json and replace only the steps given with --only")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the BENCHMARKS.md section from benchmarks/out/core.json without measuring")
    ap.add_argument("--malloc-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.threads = args.threads or cores()
    if args.malloc_child:
        malloc_child(args.malloc_child, args.threads)
        return
    args.sizes = [int(v) for v in args.sizes.split(",")]
    if args.quick:
        args.epochs, args.reps, args.tp_texts, args.chunks, args.sizes = 1, 1, 64, 2, [32]
        BASE["probe_grid"] = [1.0]
        args.ft_train, args.ft_val, args.ft_test = 48, 32, 32
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    out_json = OUT / ("core-quick.json" if args.quick else "core.json")
    if args.render_only:
        res = json.loads(out_json.read_text(encoding="utf-8"))
        res["notes"] = notes(res)
        update_section(render(res), "core")
        say(f"re-rendered the core section of {BENCHMARKS_MD} from {out_json}")
        return
    machine = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cores": cores(),
               "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "load_start": load(),
               "src": src_version()}
    merged = args.merge and out_json.exists()
    if merged:  # keep the other steps' numbers; record this partial re-measurement
        res = json.loads(out_json.read_text(encoding="utf-8"))
        rec = {"steps": args.only, **machine}
    else:
        res = {"machine": machine, "args": {k: v for k, v in vars(args).items()}}
    tmp = Path(tempfile.mkdtemp(prefix="tk-core-"))
    args.tmp = str(tmp)
    say(f"threads {torch.get_num_threads()}, load {load()}, cache dirs under {tmp}")
    spam = spam_dataset()
    try:
        steps = [("throughput", lambda: (bench_throughput_image(args, res), bench_throughput_text(args, res, spam),
                                         bench_malloc(args, res))),
                 ("digits", lambda: bench_digits(args, res, tmp)),
                 ("spam", lambda: bench_spam(args, res, tmp, spam)),
                 ("cached", lambda: bench_cached(args, res, spam))]  # reuses the first probes of digits and spam
        for name, step in steps:
            if name in only:
                say(f"== {name}")
                step()
                assert torch.get_num_threads() == args.threads, "a step changed the thread count"
                write_json(out_json, res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp = rec if merged else res["machine"]
    stamp["load_end"] = load()
    stamp["total_s"] = time.perf_counter() - T_START
    if merged:
        res.setdefault("remeasured", []).append(rec)
    res["notes"] = notes(res)
    write_json(out_json, res)
    text = render(res)
    print(text)
    if not args.quick and not args.no_write:
        update_section(text, "core")
        say(f"wrote {BENCHMARKS_MD} (section core) and {out_json}")


if __name__ == "__main__":
    main()
