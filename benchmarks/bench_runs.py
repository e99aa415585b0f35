"""Issue 14 benchmark: the run store (`transferkit runs list`) over 1,000 runs.

Fits one real run (classical TF-IDF on a small synthetic text table), copies it into 1,000 run folders with their
own names, seeds, learning rates and metrics (run.json, config.yaml and metrics.json rewritten per copy, the other
files as written by the fit), then times the real CLI (`transferkit runs list`, a fresh Python process each time,
so start-up counts) and the index refresh inside one process:
  cold  no index yet (every run.json, metrics.json and config.yaml read, index written)
  warm  index up to date (one stat per run)
  warm + --filter/--sort, and after 10 runs changed (10 re-read)
Target (issue 14): `runs list` over 1,000 runs in under 1 s.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_runs.py [--runs 1000] [--repeats 5]
Writes the block between <!-- runs:start --> and <!-- runs:end --> of BENCHMARKS.md; raw numbers in
benchmarks/out/runs/results.json (the run folders themselves under benchmarks/out/runs/store/, rebuilt each time).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "out" / "runs"

import yaml  # noqa: E402
from markdown_blocks import update_section  # noqa: E402


def make_store(n: int) -> Path:
    from transferkit.config import FitConfig
    from transferkit.data import Dataset
    from transferkit.pipeline import fit

    import numpy as np

    store = OUT / "store"
    shutil.rmtree(store, ignore_errors=True)
    words = {"a": "invoice meeting report team", "b": "prize winner cash offer"}
    texts = [f"{words['ab'[i % 2]]} item {i}" for i in range(60)]
    ds = Dataset("text", texts, np.asarray(["ab"[i % 2] for i in range(60)], dtype=object), origin="synthetic")
    cfg = FitConfig.from_dict(dict(backbone="classical:tfidf", strategy="classical", runs_dir=str(OUT / "seed"),
                                   name="template", overwrite=True))
    template = fit(cfg, train=ds, progress=False).run_dir
    rng = np.random.default_rng(0)
    for i in range(n):
        d = store / f"run-{i:04d}"
        shutil.copytree(template, d)
        info = json.loads((d / "run.json").read_text())
        info.update(name=d.name, seed=i, created=f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00")
        info.pop("files", None)  # the copies' files were rewritten: no manifest to check
        (d / "run.json").write_text(json.dumps(info))
        c = yaml.safe_load((d / "config.yaml").read_text())
        c.update(name=d.name, seed=i, strategy=["classical", "linear-probe", "fine-tune", "lp-ft"][i % 4])
        c["training"]["lr"] = float(10 ** rng.uniform(-4, -2))
        (d / "config.yaml").write_text(yaml.safe_dump(c))
        m = json.loads((d / "metrics.json").read_text())
        m["test"]["macro_f1"] = float(rng.uniform(0.5, 1.0))
        m["test"]["accuracy"] = float(rng.uniform(0.5, 1.0))
        (d / "metrics.json").write_text(json.dumps(m))
    return store


def cli_seconds(store: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "transferkit.cli.main", "runs", "list", "--runs-dir", str(store), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"runs list failed: {out.stderr.strip().splitlines()[-1:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from transferkit.runs.index import INDEX, refresh

    store = make_store(args.runs)
    res: dict[str, float] = {}
    colds, cold_refresh = [], []
    for _ in range(args.repeats):
        (store / INDEX).unlink(missing_ok=True)
        colds.append(cli_seconds(store))
        (store / INDEX).unlink(missing_ok=True)
        t = time.perf_counter()
        refresh(store)
        cold_refresh.append(time.perf_counter() - t)
    res["cold CLI"] = statistics.median(colds)
    res["cold refresh (in-process)"] = statistics.median(cold_refresh)
    res["warm CLI"] = statistics.median(cli_seconds(store) for _ in range(args.repeats))
    res["warm CLI, --filter 'strategy=lp-ft, macro_f1>0.9' --sort macro_f1"] = statistics.median(
        cli_seconds(store, "--filter", "strategy=lp-ft, macro_f1>0.9", "--sort", "macro_f1")
        for _ in range(args.repeats))
    warm = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        refresh(store)
        warm.append(time.perf_counter() - t)
    res["warm refresh (in-process)"] = statistics.median(warm)
    for i in range(10):
        p = store / f"run-{i:04d}" / "run.json"
        p.write_text(p.read_text().replace('"status"', '"note": "edited", "status"', 1))
    res["CLI after 10 runs changed"] = cli_seconds(store)
    empty = [sys.executable, "-c", "import transferkit.cli.main"]
    t = time.perf_counter()
    subprocess.run(empty, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True)
    res["Python start-up + import transferkit.cli.main"] = time.perf_counter() - t
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"runs": args.runs, "seconds": res}, indent=1))
    met = res["warm CLI"] < 1.0
    lines = ["## Run store: `transferkit runs list` over 1,000 runs (issue 14)", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_runs.py --runs {args.runs}` "
             f"({time.strftime('%Y-%m-%d')}, 2-core machine shared with other jobs). {args.runs} run folders (copies "
             "of one real fit with their own settings and metrics); median of "
             f"{args.repeats} fresh `transferkit runs list` processes (start-up included).", "",
             "| case | seconds |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in res.items()] + [
             "", f"Target (< 1 s for 1,000 runs, index up to date): **{'met' if met else 'not met'}** "
             f"({res['warm CLI']:.2f} s). The index (`runs/.index.json`) re-reads only runs whose run.json changed "
             "(mtime and size), so the first listing of a folder pays the cold figure once. MLflow's users report "
             "30 s for 120 runs (mlflow#4034)."]
    update_section("\n".join(lines), "runs")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
