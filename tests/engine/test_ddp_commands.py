"""``adapt`` and ``distill`` with ``--nproc-per-node 2`` (torchrun, gloo, 1 thread each): the same one training
engine as ``fit`` (tests/engine/test_ddp.py), so 2 processes train what one process trains at the same global batch
and rank 0 alone writes one run. Tolerances as in test_ddp.py (float-order noise that AdamW turns into lr-sized
steps; BatchNorm statistics over the global batch)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import save_image_folder, stratified_pick
from tests.helpers import cli


def _torchrun_cli(cwd: Path, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "transferkit.cli.main", *map(str, args), "--nproc-per-node", "2"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], running: bool = False) -> float:
    keys = [k for k in a if "num_batches" not in k and ("running" in k) == running]
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in keys)
    den = sum(float((a[k].double() ** 2).sum()) for k in keys)
    return (num / den) ** 0.5


def _one_run(work: Path, name: str, done: subprocess.CompletedProcess) -> Path:
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run: ") == 1  # rank 0 alone reports
    assert sorted(p.name for p in (work / "runs").iterdir()) == [name]  # no second run, partial or lock
    run = work / "runs" / name
    assert json.loads((run / "run.json").read_text())["environment"]["processes"] == "2"
    return run


def _one_and_two(tmp_path: Path, name: str, *args: object) -> tuple[Path, Path]:
    """The command in this process (runs under one/), then under torchrun in 2 processes (runs under two/)."""
    assert cli(*args, "--runs-dir", tmp_path / "one" / "runs", "--name", name) == 0
    (tmp_path / "two").mkdir()
    done = _torchrun_cli(tmp_path / "two", *args, "--runs-dir", tmp_path / "two" / "runs", "--name", name)
    return tmp_path / "one" / "runs" / name, _one_run(tmp_path / "two", name, done)


def _same_weights(one: Path, two: Path) -> None:
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert sorted(a) == sorted(b)
    assert _rel(a, b) < 0.025 and _rel(a, b, running=True) < 0.15


def test_adapt_on_two_processes_trains_what_one_does(tmp_path, mnist, digits):
    xm, ym = mnist
    xd, yd = digits
    src, tgt = stratified_pick(ym, 12, seed=5), stratified_pick(yd, 12, seed=6)
    save_image_folder(tmp_path / "mnist", xm[src], ym[src])
    save_image_folder(tmp_path / "digits", (xd[tgt] * 16).clip(0, 255), yd[tgt])
    one, two = _one_and_two(tmp_path, "da", "--quiet", "adapt", "--source", tmp_path / "mnist", "--target",
                            tmp_path / "digits", "--method", "dann", "--backbone", "scratch:cnn", "--image-size", 16,
                            "--epochs", 2, "--batch-size", 15, "--checkpoints", 1, "--trade-offs", 1,
                            "--plot-points", 20, "--num-threads", 1)
    _same_weights(one, two)
    assert (two / "report.md").is_file() and not (two / "checkpoint").exists()


def test_distill_on_two_processes_trains_what_one_does(tmp_path, digits):
    X, y = digits
    idx = np.random.default_rng(0).permutation(len(y))
    save_image_folder(tmp_path / "teach", (X[idx[:200]] * 16).clip(0, 255), y[idx[:200]])
    save_image_folder(tmp_path / "train", (X[idx[200:340]] * 16).clip(0, 255), y[idx[200:340]])
    train = ["--image-size", 16, "--epochs", 2, "--min-steps", 0, "--batch-size", 15, "--lr", 3e-3, "--num-threads", 1]
    assert cli("--quiet", "fit", "--train", tmp_path / "teach", "--backbone", "scratch:cnn", "--strategy",
               "fine-tune", *train, "--runs-dir", tmp_path / "teachers", "--name", "t") == 0
    one, two = _one_and_two(tmp_path, "kd", "--quiet", "distill", "--teacher", tmp_path / "teachers" / "t",
                            "--student", "scratch:cnn", "--train", tmp_path / "train", *train, "--no-compare")
    _same_weights(one, two)
    m1, m2 = (json.loads((r / "metrics.json").read_text())["test"]["macro_f1"] for r in (one, two))
    assert m2 == pytest.approx(m1, abs=0.05)
