"""Shared by the peer jobs: thread pinning, identical data splits, metrics, one result record per job."""
from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out" / "peers"
SEED = 0


def pin_threads(n: int) -> None:
    """Same thread count for every library, set before numpy / torch are imported."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
    import torch

    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


def peak_rss_mb() -> float:
    """High-water resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def macro_f1(y_true, y_pred) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro"))


# --------------------------------------------------------------------------------------------------------
# SpamAssassin: text = subject + newline + body; one fixed stratified test and validation set, the rest a pool
# --------------------------------------------------------------------------------------------------------
def spam(quick: bool = False, seed: int = SEED) -> dict[str, Any]:
    """{'texts', 'y' (0 ham / 1 spam), 'test', 'val', 'pool'}: index arrays of this seed's stratified split."""
    import numpy as np

    rows = [json.loads(line) for line in gzip.open(DATA / "spamassassin.jsonl.gz", "rt", encoding="utf-8")]
    texts = [f"{r.get('subject') or ''}\n{r.get('body') or ''}" for r in rows]
    y = np.asarray([1 if r["label"] == "spam" else 0 for r in rows])
    rng = np.random.default_rng(seed)
    n_test, n_val = (200, 100) if quick else (600, 200)
    test, val, pool = [], [], []
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        frac = (y == c).mean()
        a, b = int(round(n_test * frac)), int(round(n_val * frac))
        test += list(idx[:a])
        val += list(idx[a:a + b])
        pool += list(idx[a + b:])
    return {"texts": texts, "y": y, "test": np.sort(test), "val": np.sort(val), "pool": np.sort(pool)}


def kshot(y, pool, k: int | str, seed: int = SEED):
    """k labelled examples per class from the pool (all of it for 'all'), seeded, sorted."""
    import numpy as np

    if k == "all":
        return np.asarray(pool)
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool)
    return np.sort(np.concatenate([rng.permutation(pool[y[pool] == c])[:k] for c in np.unique(y[pool])]))


def finetune_subset(d: dict[str, Any], n: int, seed: int = SEED):
    """A stratified training subset of ``n`` e-mails from the pool (for the fine-tuning comparison)."""
    import numpy as np

    return kshot(d["y"], d["pool"], n // 2, seed) if n else np.asarray(d["pool"])


# --------------------------------------------------------------------------------------------------------
# images: digits (scikit-learn) and MNIST (10k), split 70/15/15 by transferkit's stratified_split (seed 0)
# --------------------------------------------------------------------------------------------------------
def images(name: str, quick: bool = False, seed: int = SEED) -> dict[str, Any]:
    """{'X', 'y', 'value_max', 'train', 'val', 'test'}: the MNIST sample is fixed (seed 0); the 70/15/15 split is
    this seed's."""
    import numpy as np

    from transferkit.data import stratified_split

    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X, y, vmax = d.images, d.target, 16.0
    else:
        z = np.load(DATA / "mnist10k.npz")
        X, y, vmax = z["images"], z["labels"], 255.0
        n = 1200 if quick else 3000
        keep = np.sort(np.random.default_rng(SEED).permutation(len(y))[:n])
        X, y = X[keep], y[keep]
    if quick and name == "digits":
        keep = np.sort(np.random.default_rng(SEED).permutation(len(y))[:600])
        X, y = X[keep], y[keep]
    tr, va, te = stratified_split(y, (0.15, 0.15), seed, True)
    return {"X": X, "y": y, "value_max": vmax, "train": tr, "val": va, "test": te}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its children: with one thread this is the job's wall time on an
    idle machine, and unlike wall time it does not grow when other jobs share the cores."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def write_result(path: str | Path, record: dict[str, Any]) -> None:
    record = {**record, "peak_rss_mb": round(peak_rss_mb(), 1), "cpu_s": round(cpu_seconds(), 2),
              "python": sys.version.split()[0]}
    Path(path).write_text(json.dumps(record, indent=1, default=float), encoding="utf-8")


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
