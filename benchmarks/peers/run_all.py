"""transferkit against what users would pick instead (issue 5), on identical splits and budgets.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peers/run_all.py [--quick] [--only finetune,fewshot,...] [--seeds 0,1,2,3,4]

Each seed draws its own split (test / validation / training pool), initialisation and batch order, shared by the
two sides of a pair; the table reports the mean paired difference with its 95% interval. A job name may carry
FitConfig overrides for ablations: ``tk_digits+layer_decay=0.85``. Every job runs in its own fresh Python process (so peak memory is that job's own RSS high-water mark), with the
same torch / BLAS thread count; each transferkit job runs right before the peer it is compared with. Raw records:
``benchmarks/out/peers/results.json``; the table goes into BENCHMARKS.md between the ``peers`` markers.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import OUT, ROOT  # noqa: E402
from report import render  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from markdown_blocks import update_section  # noqa: E402

GROUPS = {
    "finetune": ["tk_finetune", "hf_trainer"],
    "bf16": ["tk_finetune_bf16", "hf_trainer_bf16"],
    "fewshot": ["tk_contrastive_k8", "setfit_k8", "tk_contrastive_k16", "setfit_k16"],
    "frozen": ["tk_k8", "tk_k16", "tk_k64", "setfit_k64"],
    "kshot": ["tk_kshot", "tfidf_lr"],
    "images": ["tk_digits", "timm_digits", "tk_mnist", "timm_mnist"],
    "extract": ["extract_image", "extract_text"],
}


def run_job(name: str, quick: bool, threads: int, out_dir: Path, seed: int = 0, reuse: bool = False) -> dict:
    out = out_dir / f"{name}@{seed}.json"
    if reuse and out.exists():
        rec = json.loads(out.read_text(encoding="utf-8"))
        if rec.get("ok") and "wall_s" in rec:
            print(f"[peers] {name} seed {seed}: reused ({rec['wall_s']:.1f} s, F1 {rec.get('metric')})", flush=True)
            return rec
    out.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(HERE / "job.py"), name, str(out), "--threads", str(threads), "--seed", str(seed)] + (
        ["--quick"] if quick else [])
    t0 = time.perf_counter()
    # A fresh ONNX model cache per job: every engine set-up (export, quantisation) is paid inside the job.
    with open(out_dir / f"{name}@{seed}.log", "w", encoding="utf-8") as log, tempfile.TemporaryDirectory() as onnx_dir:
        env["TRANSFERKIT_ONNX_CACHE"] = onnx_dir
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    rec = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {
        "ok": False, "error": f"job exited with code {proc.returncode} and wrote nothing (see {name}@{seed}.log)"}
    rec.update(name=name, wall_s=wall, finished=time.strftime("%H:%M:%S", time.gmtime()), commit=git_commit(),
               load_after=os.getloadavg())
    if out.exists():  # the record with its wall time, so that --reuse can pick it up
        out.write_text(json.dumps(rec, indent=1, default=float), encoding="utf-8")
    status = f"F1 {rec['metric']:.4f}" if rec.get("metric") is not None else ("ok" if rec.get("ok") else rec.get("error"))
    print(f"[peers] {name} seed {seed}: {wall:.1f} s, peak RSS {rec.get('peak_rss_mb', float('nan')):.0f} MB, {status}", flush=True)
    return rec


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _title(a: argparse.Namespace, meta: dict | None = None) -> dict:
    """The block's heading: ``--title``, else the one its results were rendered with (``--from-results``)."""
    title = a.title or (meta or {}).get("title")
    return {"title": title} if title else {}


def results_file(out_dir: Path, section: str) -> Path:
    """One results file per BENCHMARKS.md block, so that --merge / --from-results never mix two blocks' runs."""
    return out_dir / ("results.json" if section == "peers" else f"results-{section}.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small data and budgets: a smoke test, not for the table")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups or job names: {', '.join(GROUPS)}")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads for every job (default 1)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds; each job runs once per seed")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a finished (job, seed) record already in the output folder instead of re-running it")
    ap.add_argument("--reuse-only", action="store_true",
                    help="with --reuse: build the table from the finished records only and run nothing (a missing "
                         "(job, seed) is left out and the table says how many seeds each row has)")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--merge", action="store_true",
                    help="keep the last run's results for jobs not run now (the table then mixes runs: it says so)")
    ap.add_argument("--section", default="peers",
                    help="BENCHMARKS.md block to write (default peers); another name keeps the peers block as it is")
    ap.add_argument("--title", default=None, help="heading of that block (default: the peers heading)")
    ap.add_argument("--from-results", action="store_true",
                    help="re-render the table from the last run's results.json instead of running the jobs")
    a = ap.parse_args()
    if a.from_results:
        saved = json.loads(results_file(OUT / ("quick" if a.quick else "full"), a.section).read_text(encoding="utf-8"))
        text = render(saved["meta"], saved["results"], **_title(a, saved["meta"]))
        print(text)
        if not a.no_write and not saved["meta"]["quick"]:
            update_section(text, a.section)
        return
    names: list[str] = []
    for item in a.only.split(","):
        item = item.strip()
        names += GROUPS.get(item, [item] if item else [])
    known = {n for g in GROUPS.values() for n in g}
    unknown = [n for n in names if n.split("+")[0] not in known]
    if unknown:
        ap.error(f"unknown group or job {unknown[0]!r}; choose from {', '.join([*GROUPS, *sorted(known)])}")
    out_dir = OUT / ("quick" if a.quick else "full")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit(),
            "load_start": os.getloadavg(), "threads": a.threads, "quick": a.quick, "cpus": os.cpu_count(),
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peers/run_all.py"
                       + (" --quick" if a.quick else "") + (f" --only {a.only}" if a.only != ",".join(GROUPS) else "")
                       + (f" --threads {a.threads}" if a.threads != 1 else "") + f" --seeds {a.seeds}"
                       + (f" --section {a.section}" if a.section != "peers" else "")
                       + (f" --title {shlex.quote(a.title)}" if a.title else "")}
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    t0 = time.perf_counter()
    results: dict[str, dict[str, dict]] = {n: {} for n in names}
    for seed in seeds:  # seed-major: both sides of a pair run back to back, once per seed
        for n in names:
            if a.reuse_only:
                p = out_dir / f"{n}@{seed}.json"
                rec = json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
                if rec and rec.get("ok") and "wall_s" in rec:
                    results[n][str(seed)] = rec
                continue
            results[n][str(seed)] = run_job(n, a.quick, a.threads, out_dir, seed, a.reuse)
    meta.update(total_s=time.perf_counter() - t0, load_end=os.getloadavg(), **_title(a))
    saved_path = results_file(out_dir, a.section)
    if a.merge and saved_path.exists():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        merged = {n: dict(r) for n, r in saved["results"].items()}
        for n, per_seed in results.items():  # this run's (job, seed) records replace the earlier ones
            merged.setdefault(n, {}).update(per_seed)
        runs = saved["meta"].get("runs") or [{k: saved["meta"].get(k) for k in ("started", "commit", "command", "total_s")}]
        meta["runs"] = runs + [{k: meta.get(k) for k in ("started", "commit", "command", "total_s")}]
        results = merged
    saved_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float),
                                          encoding="utf-8")
    text = render(meta, results, **_title(a))
    print(text)
    if not a.no_write and not a.quick:
        update_section(text, a.section)
        print(f"[peers] BENCHMARKS.md updated ({a.section} section)")


if __name__ == "__main__":
    main()
