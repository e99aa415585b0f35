"""Crash safety, end to end through the CLI: a fine-tune killed (SIGKILL) at random steps, once half-way through
writing a checkpoint, and stopped once by SIGTERM, resumed each time, ends with exactly the weights, metrics and
history of an uninterrupted run (CPU, one thread); so does a multi-phase domain adaptation killed mid-phase."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

# 60 images (3 classes) -> 42 for training; batch 8 -> 6 steps per epoch, 5 epochs = 30 optimiser steps.
# The MLP head has dropout, so the resumed run must also restore torch's generator to match.
FIT = ["fit", "--backbone", "scratch:cnn", "--strategy", "fine-tune", "--head", "mlp", "--epochs", "5",
       "--batch-size", "8", "--min-steps", "0", "--image-size", "16", "--num-threads", "1", "--patience", "5",
       "--checkpoint-every", "4"]


def _cli(tmp: Path, *args: str, fault: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFERKIT_FAULT": fault, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "transferkit.cli.main", "--quiet", *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)


def _latest_step(run: Path) -> int:
    p = run.parent / f".{run.name}.partial" / "checkpoint" / "latest.json"
    return json.loads(p.read_text())["step"]


def _history(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_s")}
            for r in json.loads((run / "history.json").read_text())]


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path, mnist_folder):
    data = str(mnist_folder)
    ref = _cli(tmp_path, *FIT, "--train", data, "--name", "ref")
    assert ref.returncode == 0, ref.stderr

    rng = np.random.default_rng(2026)
    s1, s2, s3 = int(rng.integers(2, 8)), int(rng.integers(14, 20)), int(rng.integers(24, 30))
    run = tmp_path / "runs" / "crash"
    args = [*FIT, "--train", data, "--name", "crash"]

    r = _cli(tmp_path, *args, fault=f"kill-at-step:{s1}")
    assert r.returncode == -9, (s1, r.stderr)
    assert not run.exists() and _latest_step(run) < s1

    again = _cli(tmp_path, *args)  # a new fit of the same name points at the resumable one
    assert again.returncode == 2
    assert "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    other = _cli(tmp_path, "fit", "--resume", str(run.relative_to(tmp_path)), "--lr", "0.5")
    assert other.returncode == 2 and "lr" in other.stderr and "Traceback" not in other.stderr

    before = _latest_step(run)
    r = _cli(tmp_path, "fit", "--resume", "runs/crash", fault="kill-in-checkpoint:2")
    assert r.returncode == -9, r.stderr
    assert _latest_step(run) > before  # the first checkpoint of that process landed; the half-written one did not

    r = _cli(tmp_path, "fit", "--resume", "runs/crash", fault=f"term-at-step:{s2}")
    assert r.returncode == 130, r.stderr
    assert "transferkit fit --resume runs/crash" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _latest_step(run) == s2  # SIGTERM: a checkpoint at the step where it stopped

    r = _cli(tmp_path, "fit", "--resume", "runs/crash", fault=f"kill-at-step:{s3}")
    assert r.returncode == -9, r.stderr

    r = _cli(tmp_path, "fit", "--resume", "runs/crash")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "runs" / ".crash.partial").exists()

    a, b = load_file(str(tmp_path / "runs/ref/model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (tmp_path / "runs/ref", run))
    assert ma["test"] == mb["test"] and ma["val"] == mb["val"]
    assert _history(tmp_path / "runs/ref") == _history(run)


def test_killed_adapt_resumes_to_the_uninterrupted_result(tmp_path, mnist_folder):
    data = str(mnist_folder)
    args = ["adapt", "--source", data, "--target", data, "--target-test", data, "--backbone", "scratch:cnn",
            "--method", "dann+self-training", "--trade-offs", "0.5,1", "--epochs", "3", "--batch-size", "8",
            "--image-size", "16", "--num-threads", "1", "--checkpoint-every", "3", "--plot-points", "0"]
    assert _cli(tmp_path, *args, "--name", "ref").returncode == 0
    # 54 source rows / batch 8 -> 7 steps per epoch, 21 per phase; phases: source-only, w=0.5, w=1.
    # Step numbers restart in every phase: the first kill (steps 8-19) lands in the source-only phase, whose last
    # checkpoint before it is at step 6 or later; the second (steps 2-5) is not reached again there, so it lands
    # in the w=0.5 phase.
    rng = np.random.default_rng(7)
    first, second = int(rng.integers(8, 20)), int(rng.integers(2, 6))
    r = _cli(tmp_path, *args, "--name", "crash", fault=f"kill-at-step:{first}")
    assert r.returncode == -9, r.stderr
    r = _cli(tmp_path, "adapt", "--resume", "runs/crash", fault=f"kill-at-step:{second}")
    assert r.returncode == -9, r.stderr
    ck = tmp_path / "runs/.crash.partial/checkpoint"
    assert (ck / "phase-source-only" / "done.json").exists()
    assert not (ck / "phase-dann_self-training-w0.5" / "done.json").exists()
    r = _cli(tmp_path, "adapt", "--resume", "runs/crash")
    assert r.returncode == 0, r.stderr
    a, b = (load_file(str(tmp_path / f"runs/{n}/model.safetensors")) for n in ("ref", "crash"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((tmp_path / f"runs/{n}/metrics.json").read_text()) for n in ("ref", "crash"))
    for k in ("adapted", "source_only", "selection", "oracle"):
        assert ma[k] == mb[k], k
