"""Shared helpers for the benchmark scripts: data loading, machine notes, and updating a marked
section of BENCHMARKS.md atomically (other sections are kept as they are)."""
from __future__ import annotations

import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
sys.path.insert(0, str(ROOT / "src"))

from transferkit.data import Dataset  # noqa: E402


def load_spam_rows() -> list[dict]:
    """The 5,923 SpamAssassin e-mails as dicts (id, group, label, subject, body), in file order."""
    with gzip.open(DATA / "spamassassin.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def spam_texts_labels(rows: list[dict] | None = None) -> tuple[list[str], np.ndarray]:
    rows = load_spam_rows() if rows is None else rows
    texts = [f"{r['subject']}\n{r['body']}" for r in rows]
    return texts, np.array([r["label"] for r in rows], dtype=object)


def spam_dataset(rows: list[dict] | None = None) -> Dataset:
    """SpamAssassin as a text dataset: text = subject + newline + body, label = spam/ham."""
    texts, labels = spam_texts_labels(rows)
    return Dataset("text", texts, labels, origin="spamassassin")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def machine_note() -> str:
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpus} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
            f"with {torch.get_num_threads()} intra-op threads, Python {platform.python_version()}, no GPU")


def today() -> str:
    return time.strftime("%Y-%m-%d")


def update_section(name: str, body: str, title: str = "# Benchmarks\n") -> Path:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in BENCHMARKS.md
    (appending the block if the markers are missing, creating the file with ``title`` if needed).
    Written to a temporary file in the same folder and renamed over the old one."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else title
    block = f"{start}\n{body.rstrip()}\n{end}"
    i, j = old.find(start), old.find(end)
    if i >= 0 and j > i:
        new = old[:i] + block + old[j + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=BENCHMARKS_MD.parent, prefix=".BENCHMARKS.", suffix=".md.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, BENCHMARKS_MD)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return BENCHMARKS_MD


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out
