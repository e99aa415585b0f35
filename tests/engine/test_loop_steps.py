"""The training loop's step accounting: gradient accumulation, min_steps for small data, the LR schedule,
and tensorboard logging."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.data import from_arrays
from transferkit.config import TrainConfig
from transferkit.engine.loop import TaskSpec, predict_outputs, train_model, validation_score
from transferkit.engine.model import TransferModel
from transferkit.features.inputs import Inputs


@pytest.fixture
def tiny(digits):
    X, y = digits
    b = create_backbone("scratch:cnn", image_size=16, seed=0)
    tr, va = from_arrays(X[:40], y[:40]), from_arrays(X[40:60], y[40:60])
    return TransferModel(b, 10), Inputs(tr, b), y[:40], Inputs(va, b), y[40:60]


@pytest.fixture
def step_log(monkeypatch):
    """Records the learning rate of the head's param group at every optimizer step."""
    log = []
    real_step = torch.optim.AdamW.step

    def step(self, *a, **k):
        log.append(next(g["lr"] for g in self.param_groups if g.get("name") == "head"))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return log


@pytest.mark.parametrize("accumulate, min_steps, expected_steps", [
    (1, 0, 2 * 5),    # 40 examples / batch 8 = 5 batches per epoch, 2 epochs
    (2, 0, 2 * 3),    # steps after batches 2, 4 and the last one
    (1, 20, 2 * 10),  # min_steps: two passes per epoch
    (2, 10, 2 * 5),   # accumulation counts in min_steps: 10 batches per epoch -> 5 steps
])
def test_optimizer_steps(tiny, step_log, accumulate, min_steps, expected_steps):
    model, tr, ytr, va, yva = tiny
    s = TrainConfig(epochs=2, batch_size=8, accumulate=accumulate, min_steps=min_steps, patience=5, lr=1e-3)
    hist = train_model(model, tr, ytr, va, yva, s, progress=False)
    assert len(hist.epochs) == 2
    assert len(step_log) == expected_steps


def test_warmup_then_cosine_decay(tiny, step_log):
    model, tr, ytr, va, yva = tiny
    s = TrainConfig(min_steps=0, epochs=4, batch_size=8, lr=1e-2, warmup=0.25, patience=10)
    train_model(model, tr, ytr, va, yva, s, progress=False)
    lrs = np.asarray(step_log)
    assert len(lrs) == 20
    warm = int(0.25 * 20)
    assert (np.diff(lrs[: warm + 1]) > 0).all(), "linear warm-up"
    assert lrs[warm] == pytest.approx(1e-2, rel=1e-6), "peak at the configured LR"
    assert (np.diff(lrs[warm:]) <= 1e-12).all(), "then decays"
    assert lrs[-1] < 0.05 * 1e-2


def test_tensorboard_events_are_written(tiny, tmp_path):
    model, tr, ytr, va, yva = tiny
    train_model(model, tr, ytr, va, yva, TrainConfig(min_steps=0, epochs=1, batch_size=8), log_dir=tmp_path / "tb",
                progress=False)
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_regression_training_fits_standardised_target(digits):
    """The loop trains a regression head on a standardised target (here: the digit's mean intensity)."""
    X, _ = digits
    target = X[:120].mean(axis=(1, 2))
    z = (target - target.mean()) / target.std()
    b = create_backbone("scratch:cnn", image_size=16, seed=0)
    model = TransferModel(b, 1)
    tr, va = Inputs(from_arrays(X[:90]), b), Inputs(from_arrays(X[90:120]), b)
    before = validation_score(predict_outputs(model, va), z[90:], "regression")
    hist = train_model(model, tr, z[:90], va, z[90:], TrainConfig(epochs=4, batch_size=16, lr=3e-3, min_steps=0,
                                                                   patience=10), TaskSpec("regression", "huber"),
                       progress=False)
    assert hist.best_metric > before
    assert validation_score(predict_outputs(model, va), z[90:], "regression") == pytest.approx(hist.best_metric,
                                                                                                 abs=1e-5)


def test_bf16_precision_runs_under_autocast_and_keeps_fp32_weights(tiny, monkeypatch):
    model, tr, ytr, va, yva = tiny
    seen = []
    real = torch.nn.Conv2d.forward

    def spy(self, x):
        out = real(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    train_model(model, tr, ytr, va, yva, TrainConfig(min_steps=0, epochs=1, batch_size=8, precision="bf16"), progress=False)
    assert torch.bfloat16 in seen  # convolutions ran in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    fp32 = predict_outputs(model, va)
    bf16 = predict_outputs(model, va, precision="bf16")
    assert fp32.dtype == bf16.dtype == np.float32
    assert np.abs(fp32 - bf16).max() > 0  # a different arithmetic, not silently fp32
    assert (fp32.argmax(1) == bf16.argmax(1)).mean() >= 0.8


def test_fit_config_rejects_unknown_precision():
    from transferkit.config import FitConfig
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="precision"):
        FitConfig.from_dict(dict(precision="fp8")).validate()
