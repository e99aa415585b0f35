"""The engine's pieces in-process: the trainable predicate, callbacks and events, checkpoints (atomic pointer,
optimiser round trip), the accelerator's generator states and precision rules, and the run lifecycle."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.backbones import create_backbone
from transferkit.config import TrainConfig
from transferkit.engine.accelerator import Accelerator
from transferkit.engine.callbacks import Callback, Checkpoint
from transferkit.engine.checkpoint import (flatten_optimizer, latest_checkpoint, load_checkpoint, save_checkpoint,
                                           unflatten_optimizer)
from transferkit.engine.loop import param_groups
from transferkit.engine.model import TransferModel
from transferkit.engine.trainer import Trainer, warmup_cosine
from transferkit.errors import ConfigError, DataError
from transferkit.runs.lifecycle import partial_dir, resumable, start_run


class _Plan:
    def __init__(self, n: int, bs: int) -> None:
        self.n, self.bs = n, bs

    def epoch(self, e: int) -> list[np.ndarray]:
        idx = np.random.default_rng([0, e]).permutation(self.n)
        return [idx[i:i + self.bs] for i in range(0, self.n, self.bs)]


def _toy(n: int = 40, d: int = 5):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(n, d, generator=g), torch.randn(d, 1, generator=g)
    return x, x @ w


def _trainer(callbacks=(), epochs: int = 3, model: nn.Module | None = None) -> Trainer:
    x, y = _toy()
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Linear(8, 1))

    def objective(m, batch, state):
        xb, yb = batch
        return {"loss": nn.functional.mse_loss(m(xb), yb), "progress": torch.tensor(state.progress)}

    return Trainer(model, objective, _Plan(40, 8), lambda idx: (x[idx], y[idx]),
                   [{"params": list(model.parameters()), "lr": 0.05}], epochs=epochs, lr=0.05,
                   schedule=warmup_cosine(0.2), callbacks=list(callbacks))


def test_trainable_predicate_keeps_other_parameters_frozen_and_out_of_every_group():
    model = TransferModel(create_backbone("scratch:cnn", image_size=16, seed=0), 3)
    groups = param_groups(model, TrainConfig(lr=1e-2), trainable=lambda name, p: name.startswith("head."))
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert [g["name"] for g in groups] == ["head"]
    for name, p in model.named_parameters():
        assert p.requires_grad == name.startswith("head.") and (id(p) in in_groups) == p.requires_grad


def test_events_run_in_order_and_the_loss_goes_down():
    seen = []

    class Spy(Callback):
        def on_fit_start(self, t):
            seen.append("fit_start")

        def on_epoch_start(self, t):
            seen.append(f"epoch{t.state.epoch}")

        def on_step_end(self, t):
            seen.append("step")

        def on_epoch_end(self, t):
            t.state.metrics["val_metric"] = -t.state.metrics["train_loss"]

        def on_fit_end(self, t):
            seen.append("fit_end")

    st = _trainer([Spy()]).fit()
    assert seen[0] == "fit_start" and seen[-1] == "fit_end"
    assert seen.count("step") == st.step == st.total_steps == 15
    assert [h["epoch"] for h in st.history] == [1, 2, 3] and all("val_metric" in h for h in st.history)
    assert st.history[-1]["train_loss"] < st.history[0]["train_loss"]


def test_checkpoint_round_trip_continues_exactly(tmp_path):
    """Stop after epoch 1 (a checkpoint), rebuild everything, resume: same weights as 3 epochs straight."""
    ref = _trainer()
    ref.fit()

    class StopAfterFirst(Callback):
        order = 200

        def on_epoch_saved(self, t):
            t.state.should_stop = True

    first = _trainer([Checkpoint(tmp_path, every=2), StopAfterFirst()])
    first.fit()
    assert first.state.epoch == 1 and latest_checkpoint(tmp_path) is not None
    torch.manual_seed(123)  # a different global generator: the checkpoint must restore it
    resumed = _trainer([Checkpoint(tmp_path, every=2, resume=True)])
    resumed.fit()
    assert resumed.resumed
    for a, b in zip(ref.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["train_loss"] for h in ref.state.history] == [h["train_loss"] for h in resumed.state.history]


def test_checkpoint_with_other_fingerprint_is_refused(tmp_path):
    _trainer([Checkpoint(tmp_path, fingerprint={"lr": 1})], epochs=1).fit()
    with pytest.raises(ConfigError, match="other settings"):
        _trainer([Checkpoint(tmp_path, resume=True, fingerprint={"lr": 2})], epochs=1).fit()


def test_a_half_written_checkpoint_never_becomes_latest(tmp_path):
    t = torch.arange(4.0)
    first = save_checkpoint(tmp_path, 1, {"model": {"w": t}}, {"state": {"step": 1}})
    (tmp_path / "ckpt-00000002-ff.tmp").mkdir()  # what a kill during the next write leaves behind
    (tmp_path / "ckpt-00000002-ff.tmp" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == first
    tensors, meta = load_checkpoint(first)
    assert torch.equal(tensors["model"]["w"], t) and meta["state"]["step"] == 1
    second = save_checkpoint(tmp_path, 2, {"model": {"w": t + 1}}, {"state": {"step": 2}})
    assert latest_checkpoint(tmp_path) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second.name, "latest.json"])  # strays removed


def test_optimizer_state_flattens_to_tensors_and_json_and_back():
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer(opt.state_dict())
    json.dumps(meta)
    opt2 = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer(tensors, json.loads(json.dumps(meta))))
    assert opt2.param_groups[0]["lr"] == 0.1
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_accelerator_restores_every_generator_and_checks_precision():
    acc = Accelerator(seed=3)
    acc.setup()
    tensors, meta = acc.rng_state()
    json.dumps(meta)
    draws = (torch.rand(3), np.random.rand(3), random.random())
    acc.set_rng_state(tensors, meta)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]
    with pytest.raises(ConfigError, match="CUDA"):
        Accelerator(precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="Unknown precision"):
        Accelerator(precision="fp8")


def test_lifecycle_commits_aborts_and_keeps_resumable_runs(tmp_path):
    with start_run(tmp_path, "ok") as run:
        (run.dir / "x.txt").write_text("1")
    assert (tmp_path / "ok" / "x.txt").exists() and not partial_dir(tmp_path / "ok").exists()
    with pytest.raises(ConfigError, match="already exists"):
        with start_run(tmp_path, "ok"):
            pass
    with pytest.raises(RuntimeError):
        with start_run(tmp_path, "failed"):
            raise RuntimeError("boom")
    assert not partial_dir(tmp_path / "failed").exists()  # no checkpoint: nothing left behind
    with pytest.raises(RuntimeError):
        with start_run(tmp_path, "crashed") as run:
            save_checkpoint(run.checkpoints, 7, {"model": {"w": torch.zeros(1)}},
                            {"state": {"step": 7, "epoch": 2, "total_steps": 30}})
            raise RuntimeError("killed")
    assert resumable(tmp_path / "crashed")["step"] == 7
    with pytest.raises(ConfigError, match="--resume"):
        with start_run(tmp_path, "crashed"):
            pass
    with start_run(tmp_path, "crashed", resume=True) as run:
        assert run.resumed and latest_checkpoint(run.checkpoints) is not None
    assert (tmp_path / "crashed").is_dir() and not (tmp_path / "crashed" / "checkpoint").exists()
    with pytest.raises(DataError, match="Nothing to resume"):
        with start_run(tmp_path, "never", resume=True):
            pass


def test_lifecycle_refuses_a_run_another_live_process_is_writing(tmp_path):
    """Another process holds the run's writer lock: refused with its pid; once it dies (killed, so it never
    cleans up) the lock is gone with it and the run can be written."""
    import subprocess
    import sys

    tmp = partial_dir(tmp_path / "busy")
    holder = ("import fcntl, json, os, sys, time; tmp = sys.argv[1]; os.makedirs(tmp); "
              "fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
              "open(os.path.join(tmp, '.owner.json'), 'w').write(json.dumps({'pid': os.getpid()})); "
              "print('ready', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", holder, str(tmp), str(tmp_path / ".busy.lock")],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(ConfigError, match=f"being written by process {p.pid}"):
            with start_run(tmp_path, "busy"):
                pass
    finally:
        p.kill()
        p.wait()
    with start_run(tmp_path, "busy") as run:
        (run.dir / "x.txt").write_text("mine")
    assert (tmp_path / "busy" / "x.txt").read_text() == "mine"