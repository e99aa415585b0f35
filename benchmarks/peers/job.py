"""Run one peer-benchmark job in this (fresh) process and write its JSON record:
``python benchmarks/peers/job.py NAME[+KEY=VALUE...] OUT.json [--seed S] [--quick] [--threads N]``.

``+KEY=VALUE`` suffixes are FitConfig overrides for a transferkit job (ablations), e.g.
``tk_digits+layer_decay=0.85``; values are parsed as JSON where they can be (numbers, true/false)."""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import pin_threads, write_result  # noqa: E402


def jobs() -> dict:
    import jobs_image as im
    import jobs_text as tx
    import jobs_throughput as tp

    # every job: (quick, threads, seed, overrides) -> record
    jobs = {
        "tk_finetune": tx.tk_finetune, "hf_trainer": tx.hf_trainer,
        "tk_finetune_bf16": lambda q, t, s, o: tx.tk_finetune(q, t, s, o, "bf16"),
        "hf_trainer_bf16": lambda q, t, s, o: tx.hf_trainer(q, t, s, o, bf16=True),
        "tfidf_lr": tx.tfidf_lr, "tk_kshot": tx.tk_kshot,
        "tk_digits": lambda q, t, s, o: im.tk_image(q, t, "digits", s, o),
        "timm_digits": lambda q, t, s, o: im.timm_loop(q, t, "digits", s, o),
        "tk_mnist": lambda q, t, s, o: im.tk_image(q, t, "mnist", s, o),
        "timm_mnist": lambda q, t, s, o: im.timm_loop(q, t, "mnist", s, o),
        "extract_image": lambda q, t, s, o: tp.throughput(q, t, "image"),
        "extract_text": lambda q, t, s, o: tp.throughput(q, t, "text"),
    }
    for k in (8, 16, 64):
        jobs[f"tk_k{k}"] = lambda q, t, s, o, k=k: tx.tk_fewshot(q, t, k, s, o)
        jobs[f"setfit_k{k}"] = lambda q, t, s, o, k=k: tx.setfit_job(q, t, k, s, o)
    try:
        import jobs_fewshot as fs

        for k in (8, 16, 64):
            jobs[f"tk_contrastive_k{k}"] = lambda q, t, s, o, k=k: fs.tk_contrastive(q, t, k, s, **({"overrides": o} if o else {}))
    except ImportError:
        pass
    return jobs


def parse_name(name: str) -> tuple[str, dict]:
    """'tk_digits+layer_decay=0.85' -> ('tk_digits', {'layer_decay': 0.85})."""
    import json

    base, *parts = name.split("+")
    overrides = {}
    for p in parts:
        key, _, raw = p.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except ValueError:
            overrides[key] = raw
    return base, overrides


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("out")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="split, initialisation and batch order (both sides of a pair)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    pin_threads(a.threads)
    import warnings

    warnings.filterwarnings("ignore")
    try:
        base, overrides = parse_name(a.name)
        rec = jobs()[base](a.quick, a.threads, a.seed, overrides)
        rec["ok"] = True
    except Exception as e:  # the table says which job failed and why
        traceback.print_exc()
        rec = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
    import torch

    rec.update(name=a.name, seed=a.seed, threads=a.threads, torch_threads=torch.get_num_threads(),
               job_seconds=time.perf_counter() - t0)
    write_result(a.out, rec)
    return 0 if rec["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
