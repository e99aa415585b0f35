"""Run one peer-benchmark job in this (fresh) process and write its JSON record:
``python benchmarks/peers/job.py NAME OUT.json [--quick] [--threads N]``."""
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

    return {
        "tk_finetune": tx.tk_finetune, "hf_trainer": tx.hf_trainer,
        "tk_finetune_bf16": lambda q, t: tx.tk_finetune(q, t, "bf16"),
        "hf_trainer_bf16": lambda q, t: tx.hf_trainer(q, t, bf16=True),
        "tfidf_lr": tx.tfidf_lr, "tk_kshot": tx.tk_kshot,
        "tk_k8": lambda q, t: tx.tk_fewshot(q, t, 8), "setfit_k8": lambda q, t: tx.setfit_job(q, t, 8),
        "tk_k64": lambda q, t: tx.tk_fewshot(q, t, 64), "setfit_k64": lambda q, t: tx.setfit_job(q, t, 64),
        "tk_digits": lambda q, t: im.tk_image(q, t, "digits"), "timm_digits": lambda q, t: im.timm_loop(q, t, "digits"),
        "tk_mnist": lambda q, t: im.tk_image(q, t, "mnist"), "timm_mnist": lambda q, t: im.timm_loop(q, t, "mnist"),
        "extract_image": lambda q, t: tp.throughput(q, t, "image"),
        "extract_text": lambda q, t: tp.throughput(q, t, "text"),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("out")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    pin_threads(a.threads)
    import warnings

    warnings.filterwarnings("ignore")
    try:
        rec = jobs()[a.name](a.quick, a.threads)
        rec["ok"] = True
    except Exception as e:  # the table says which job failed and why
        traceback.print_exc()
        rec = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
    import torch

    rec.update(name=a.name, threads=a.threads, torch_threads=torch.get_num_threads(),
               job_seconds=time.perf_counter() - t0)
    write_result(a.out, rec)
    return 0 if rec["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
