"""Issue 17 benchmark: past one process, on this machine's CPUs (1 torch thread per worker throughout).

1. Feature extraction, same data (MNIST digits as PNG files), same backbone (default the pretrained
   ``packaged:efficientnet_lite0``, ``--backbone`` to change) and engine: the
   plain single-process pipeline (``export_features``, cache off) against Ray Data with 1 and 2 actors
   (``extract_on_ray``), in this process, with the local Ray instance started beforehand (its start-up is
   reported on its own). Target: Ray with 1 actor within 10% of the plain pipeline.
2. Shard mode: ``transferkit features --shard 0/1`` in one process against ``--shard 0/2`` + ``--shard 1/2`` in two
   concurrent processes (+ ``--merge``); wall time from process start, so both pay the same start-up.
3. DDP fine-tuning: ``transferkit fit`` in one process against ``--nproc-per-node 2`` (torchrun, gloo), at the same
   global batch: training examples/s of the last epoch (from the run's history) and the command's wall time.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_scale.py [--engine eager|onnx]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_scale.py --quick   # smoke test: small data

Writes the block between <!-- scale:start --> and <!-- scale:end --> of BENCHMARKS.md and the raw records to
benchmarks/out/scale/results.json. ``--quick`` writes only benchmarks/out/scale-quick/ (never BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import cli_command, offline_env  # noqa: E402
from markdown_blocks import update_section

MNIST = ROOT.parent / "shared" / "data" / "mnist10k.npz"
FULL = {"images": 10_000, "small_images": 2000, "size": 64, "shard_rows": 1000, "fit_images": 3000, "fit_size": 32, "epochs": 2}
QUICK = {"images": 600, "small_images": 150, "size": 32, "shard_rows": 150, "fit_images": 300, "fit_size": 16, "epochs": 1}


def mnist_folder(root: Path, n: int) -> Path:
    """``n`` MNIST digits (a seeded sample: the file is sorted by label) as PNG files, written once."""
    import numpy as np
    from PIL import Image

    if (root / ".complete").exists() and int((root / ".complete").read_text()) == n:
        return root
    shutil.rmtree(root, ignore_errors=True)
    d = np.load(MNIST)
    pick = np.sort(np.random.default_rng(0).permutation(len(d["labels"]))[:n])
    for i, (img, lab) in enumerate(zip(d["images"][pick], d["labels"][pick])):
        (root / str(lab)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / str(lab) / f"{i:05d}.png")
    (root / ".complete").write_text(str(n))
    return root


def caches(out: Path) -> dict[str, str]:
    """The feature and ONNX caches of this benchmark (under its output folder, not the user's)."""
    return {"TRANSFERKIT_CACHE": str(out / "cache"), "TRANSFERKIT_ONNX_CACHE": str(out / "onnx")}


def cli(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*args), env=offline_env(1, **caches(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait(*procs: subprocess.Popen) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"command failed ({p.returncode}): {p.args}\n{err[-2000:]}")


# -- 1. Ray against the plain pipeline -----------------------------------------------------------------------
def extraction(out: Path, data: Path, small: Path, s: dict[str, Any], engine: str, backbone: str) -> dict[str, Any]:
    """Plain vs Ray at the full size, and plain vs Ray (1 actor) at a small size: the difference of the two sizes
    is the per-row cost, without the fixed costs (actor start-up, listing the data, merging)."""
    import numpy as np
    import pandas as pd
    import ray
    import torch

    from transferkit.distributed.embedder import FeatureJob
    from transferkit.distributed.ray_extract import extract_on_ray
    from transferkit.features import FeatureCache
    from transferkit.runs.features import export_features

    os.environ.update(caches(out))
    torch.set_num_threads(1)
    job = FeatureJob(str(data), backbone, image_size=s["size"], engine=engine, threads=1)
    export_features(job.load_backbone(), job.load_data().subset(np.arange(64)), out / "warm.parquet",
                    cache=FeatureCache(enabled=False, engine=engine), progress=False)  # ONNX export, once
    t0 = time.perf_counter()
    plain = out / "plain.parquet"
    export_features(job.load_backbone(), job.load_data(), plain, cache=FeatureCache(enabled=False, engine=engine),
                    progress=False)
    t_plain = time.perf_counter() - t0
    small_job = dataclasses.replace(job, data=str(small))
    t0 = time.perf_counter()
    export_features(small_job.load_backbone(), small_job.load_data(), out / "plain-small.parquet",
                    cache=FeatureCache(enabled=False, engine=engine), progress=False)
    t_plain_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    t_start = time.perf_counter() - t0
    rec: dict[str, Any] = {"rows": s["images"], "engine": engine, "plain_s": t_plain, "ray_start_s": t_start}
    try:
        for actors in (1, 2):
            where = out / f"ray-{actors}"
            shutil.rmtree(where, ignore_errors=True)
            t0 = time.perf_counter()
            extract_on_ray(job, where, actors=actors, shard_rows=s["shard_rows"])
            rec[f"ray{actors}_s"] = time.perf_counter() - t0
            a, b = pd.read_parquet(plain), pd.read_parquet(where / "features.parquet")
            rec[f"ray{actors}_max_abs_diff"] = float(np.abs(a.iloc[:, 2:].to_numpy() - b.iloc[:, 2:].to_numpy()).max())
            rec[f"ray{actors}_ids_equal"] = a["id"].tolist() == b["id"].tolist()
        shutil.rmtree(out / "ray-small", ignore_errors=True)
        t0 = time.perf_counter()
        extract_on_ray(small_job, out / "ray-small", actors=1, shard_rows=s["shard_rows"])
        rec.update(small_rows=s["small_images"], plain_small_s=t_plain_small, ray1_small_s=time.perf_counter() - t0)
    finally:
        ray.shutdown()
    rec["overhead_1_actor"] = rec["ray1_s"] / t_plain - 1
    rec["overhead_per_row"] = (rec["ray1_s"] - rec["ray1_small_s"]) / (t_plain - t_plain_small) - 1
    rec["ray_fixed_s"] = rec["ray1_small_s"] - rec["plain_small_s"] * (1 + rec["overhead_per_row"])
    return rec


# -- 2. shard mode: 2 processes against 1 ----------------------------------------------------------------------
def shard_mode(out: Path, data: Path, s: dict[str, Any], engine: str, backbone: str) -> dict[str, Any]:
    base = ["features", "--data", data, "--backbone", backbone, "--image-size", s["size"], "--engine", engine,
            "--threads", 1]
    rec: dict[str, Any] = {"rows": s["images"]}
    for n in (1, 2):
        where = out / f"shards-{n}"
        shutil.rmtree(where, ignore_errors=True)
        t0 = time.perf_counter()
        wait(*[cli(out, *base, "-o", where, "--shard", f"{i}/{n}") for i in range(n)])
        wait(cli(out, "features", "-o", where, "--merge"))
        rec[f"procs{n}_s"] = time.perf_counter() - t0
    rec["speedup"] = rec["procs1_s"] / rec["procs2_s"]
    return rec


# -- 3. DDP: 2 processes against 1 ---------------------------------------------------------------------------------
def ddp(out: Path, data: Path, s: dict[str, Any], backbone: str) -> dict[str, Any]:
    fit = ["fit", "--train", data, "--backbone", backbone, "--strategy", "fine-tune", "--image-size",
           s["fit_size"], "--epochs", s["epochs"], "--batch-size", 64, "--min-steps", 0, "--num-threads", 1,
           "--runs-dir", out / "runs", "--overwrite"]
    rec: dict[str, Any] = {"train_rows": None, "global_batch": 64}
    for n in (1, 2):
        t0 = time.perf_counter()
        wait(cli(out, *fit, "--name", f"ddp-{n}", *(["--nproc-per-node", 2] if n == 2 else [])))
        rec[f"procs{n}_s"] = time.perf_counter() - t0
        run = out / "runs" / f"ddp-{n}"
        history = json.loads((run / "history.json").read_text())
        rec[f"procs{n}_examples_per_s"] = history[-1]["examples_per_s"]
        rec[f"procs{n}_test_metrics"] = json.loads((run / "metrics.json").read_text())["test"]["macro_f1"]
        rec["train_rows"] = json.loads((run / "metrics.json").read_text())["details"]["sizes"]["train"]
    rec["speedup"] = rec["procs2_examples_per_s"] / rec["procs1_examples_per_s"]
    return rec


def markdown(res: dict[str, Any]) -> str:
    e, sh, d, env_ = res["extraction"], res["shards"], res["ddp"], res["environment"]
    ok = "within" if e["overhead_1_actor"] <= 0.10 else "**outside**"
    lines = [
        "## Past one machine: Ray extraction, shard mode, DDP (issue 17)",
        "",
        f"{env_['cpus']} CPU cores, 1 torch thread per worker, torch {env_['torch']}, ray {env_['ray']}; backbone "
        f"`{res['settings']['backbone']}`, MNIST digits as PNG files, engine `{e['engine']}`.",
        "",
        f"**Feature extraction, {e['rows']} images at {res['settings']['size']} px** (Ray started beforehand in "
        f"{e['ray_start_s']:.1f} s; the Ray times include the actors' start-up and this process loading the backbone "
        "and data to check the shards):",
        "",
        "| pipeline | seconds | rows/s | vs plain |",
        "|---|---:|---:|---:|",
        f"| plain `export_features` (1 process) | {e['plain_s']:.1f} | {e['rows'] / e['plain_s']:.0f} | 1.00x |",
    ]
    for a in (1, 2):
        t = e[f"ray{a}_s"]
        lines.append(f"| Ray Data, {a} actor{'s' if a > 1 else ''} | {t:.1f} | {e['rows'] / t:.0f} | "
                     f"{e['plain_s'] / t:.2f}x |")
    lines += [f"| plain, {e['small_rows']} images | {e['plain_small_s']:.1f} | {e['small_rows'] / e['plain_small_s']:.0f} "
              "| |",
              f"| Ray Data, 1 actor, {e['small_rows']} images | {e['ray1_small_s']:.1f} | "
              f"{e['small_rows'] / e['ray1_small_s']:.0f} | {e['plain_small_s'] / e['ray1_small_s']:.2f}x |",
              "", f"Ray with 1 actor costs {e['overhead_1_actor']:+.1%} against the plain pipeline on {e['rows']} "
              f"images ({ok} the 10% target; the median of {e.get('repeats', 1)} repeats, which ranged "
              f"{min(e.get('overheads', [e['overhead_1_actor']])):+.1%} to "
              f"{max(e.get('overheads', [e['overhead_1_actor']])):+.1%}; the table shows that repeat). Of that, per row (the difference between {e['rows']} and "
              f"{e['small_rows']} images, so without fixed costs) Ray costs {e['overhead_per_row']:+.1%}"
              + (" (faster per row: this process collects and writes each shard while the actor computes the next, "
                 "so 2 cores share work that the plain pipeline does on one)" if e["overhead_per_row"] < 0 else "")
              + f"; the fixed part is about {e['ray_fixed_s']:.1f} s (actor start-up: a Python process importing "
              "torch and loading the backbone; Ray Data planning; merging the shards), paid once per extraction, so "
              f"the overhead tends to {e['overhead_per_row']:+.1%} as the data grow. Features equal the plain ones (max abs diff "
              f"{e['ray1_max_abs_diff']:.2g}, ids aligned: {e['ray1_ids_equal'] and e['ray2_ids_equal']}).", "",
              f"**Shard mode** (`--shard I/N`, then `--merge`; wall time from process start): 1 process "
              f"{sh['procs1_s']:.1f} s, 2 concurrent processes {sh['procs2_s']:.1f} s: **{sh['speedup']:.2f}x**. "
              "Every process lists and opens all the images to agree on the rows (a full decode per file, ~0.3 ms "
              "each) before decoding and embedding its share, and pays its own start-up: that part does not "
              "shrink with N.", "",
              f"**DDP fine-tune** ({d['train_rows']} training images at {res['settings']['fit_size']} px, global batch "
              f"{d['global_batch']}, {res['settings']['epochs']} epoch(s)): 1 process {d['procs1_examples_per_s']:.0f} "
              f"examples/s ({d['procs1_s']:.1f} s wall), 2 processes (torchrun, gloo) "
              f"{d['procs2_examples_per_s']:.0f} examples/s ({d['procs2_s']:.1f} s wall): **{d['speedup']:.2f}x**; "
              f"test macro-F1 {d['procs1_test_metrics']:.3f} vs {d['procs2_test_metrics']:.3f}. Each step all-reduces "
              "the gradients (3.4 M parameters) and, in every BatchNorm layer, the batch statistics forward and "
              "backward (~100 small collectives per step for EfficientNet-Lite0); on CPU, gloo runs them on the same 2 "
              "cores that compute, so at 32 px and 32 images per process communication outweighs the halved "
              "compute. DDP pays off where compute per step dominates: GPUs with NCCL, larger images or models.", "",
              "On 2 cores, two workers of 1 thread can at best double one (run with no other job on the machine). "
              "Reproduce: `HF_HUB_OFFLINE=1 .venv/bin/python "
              "benchmarks/bench_scale.py` (raw numbers: `benchmarks/out/scale/results.json`)."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small data; no BENCHMARKS.md")
    ap.add_argument("--engine", default="eager", help="extraction engine for both pipelines (eager | onnx)")
    ap.add_argument("--backbone", default=None,
                    help="backbone for all three parts (default packaged:efficientnet_lite0; quick: scratch:cnn)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="extraction measured this many times; the run with the median overhead is reported with "
                         "the range (default 3; quick 1)")
    ap.add_argument("--only", default="extraction,shards,ddp",
                    help="parts to measure (none: only rewrite the report); the others are taken from the last "
                         "results.json")
    args = ap.parse_args()
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    s = dict(QUICK if args.quick else FULL)
    s["backbone"] = args.backbone or ("scratch:cnn" if args.quick else "packaged:efficientnet_lite0")
    out = ROOT / "benchmarks" / "out" / ("scale-quick" if args.quick else "scale")
    out.mkdir(parents=True, exist_ok=True)
    import ray
    import torch

    t_start = time.perf_counter()
    data = mnist_folder(out / "data" / f"mnist-{s['images']}", s["images"])
    small = mnist_folder(out / "data" / f"mnist-{s['small_images']}", s["small_images"])
    fit_data = mnist_folder(out / "data" / f"mnist-{s['fit_images']}", s["fit_images"])
    res: dict[str, Any] = {"environment": {"cpus": os.cpu_count(), "torch": torch.__version__.split("+")[0],
                                           "ray": ray.__version__, "quick": args.quick}, "settings": s}
    last = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    if "extraction" in parts:
        repeats = []
        for i in range(args.repeats or (1 if args.quick else 3)):
            print(f"extraction: plain vs Ray (repeat {i + 1}) ...", flush=True)
            repeats.append(extraction(out, data, small, s, args.engine, s["backbone"]))
            print(f"  {repeats[-1]}", flush=True)
        ranked = sorted(repeats, key=lambda r: r["overhead_1_actor"])
        res["extraction"] = {**ranked[len(ranked) // 2], "repeats": len(repeats),
                             "overheads": [r["overhead_1_actor"] for r in repeats],
                             "overheads_per_row": [r["overhead_per_row"] for r in repeats]}
    if "shards" in parts:
        print("shard mode: 2 processes vs 1 ...", flush=True)
        res["shards"] = shard_mode(out, data, s, args.engine, s["backbone"])
        print(f"  {res['shards']}", flush=True)
    if "ddp" in parts:
        print("DDP: 2 processes vs 1 ...", flush=True)
        res["ddp"] = ddp(out, fit_data, s, s["backbone"])
        print(f"  {res['ddp']}", flush=True)
    for part in ("extraction", "shards", "ddp"):
        if part not in res:
            if part not in last:
                raise SystemExit(f"no earlier '{part}' figures in {out / 'results.json'}: measure it (--only)")
            res[part] = last[part]
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "results.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    text = markdown(res)
    (out / "scale.md").write_text(text + "\n", encoding="utf-8")
    if not args.quick:
        update_section(text, "scale")
    print(text)
    print(f"\nwrote {out / 'results.json'}" + ("" if args.quick else " and BENCHMARKS.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
