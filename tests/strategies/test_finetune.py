"""Fine-tuning: frozen bottom groups, layer-wise LR decay, early stopping with best weights, LP-FT,
class weights."""
from __future__ import annotations

import copy
import importlib

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.engine import loop
from transferkit.config import TrainConfig
from transferkit.engine.loop import param_groups, train_model
from transferkit.engine.model import TransferModel
from transferkit.features.inputs import Inputs
from transferkit.pipeline import fit
from transferkit.strategies import STRATEGIES


@pytest.fixture(scope="module")
def digits_train(digits):
    X, y = digits
    return from_arrays(X[:120], y[:120])


def _bn_buffers(module, names):
    """running_mean / running_var buffers of the modules owning the given parameter names."""
    owners = {n.rsplit(".", 1)[0] for n in names}
    return {k: v.clone() for k, v in module.state_dict().items()
            if k.rsplit(".", 1)[0] in owners and k.endswith(("running_mean", "running_var"))}


def test_freeze_keeps_bottom_groups_and_trains_the_rest(digits_train):
    K = 3
    cfg = FitConfig.from_dict(dict(backbone="packaged:efficientnet_lite0", strategy="fine-tune", image_size=32, epochs=1,
                    batch_size=32, lr=5e-3, freeze=K, seed=0, min_steps=0))
    r = fit(cfg, train=digits_train, save=False, progress=False)
    reference = create_backbone("packaged:efficientnet_lite0", image_size=32)
    groups = reference.layer_groups()
    before, after = dict(reference.named_parameters()), dict(r.model.backbone.named_parameters())
    for g in groups[:K]:
        for n in g:
            assert torch.equal(before[n], after[n]), f"frozen parameter {n} changed"
    frozen_bn_before = _bn_buffers(reference, [n for g in groups[:K] for n in g])
    frozen_bn_after = _bn_buffers(r.model.backbone, [n for g in groups[:K] for n in g])
    assert frozen_bn_before, "the stem has BatchNorm buffers"
    for k, v in frozen_bn_before.items():
        assert torch.equal(v, frozen_bn_after[k]), f"running statistic {k} of a frozen layer changed"
    for i, g in enumerate(groups[K:], start=K):
        changed = [n for n in g if not torch.equal(before[n], after[n])]
        assert changed, f"group {i} was not trained"
    assert r.details["best_epoch"] == 1


def test_layer_wise_lr_decreases_going_down():
    model = TransferModel(create_backbone("scratch:cnn", seed=0), 3)
    s = TrainConfig(min_steps=0, lr=1e-2, layer_decay=0.5, freeze=1)
    groups = param_groups(model, s)
    names = [g["name"] for g in groups]
    assert names == ["group1", "group2", "group3", "head"]
    lrs = [g["lr"] for g in groups]
    assert lrs[-1] == pytest.approx(1e-2)
    for lower, upper in zip(lrs, lrs[1:]):
        assert lower == pytest.approx(upper * 0.5)
    frozen = model.backbone.layer_groups()[0]
    params = dict(model.named_parameters())
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    for n in frozen:
        assert not params[f"backbone.{n}"].requires_grad
        assert id(params[f"backbone.{n}"]) not in in_optimizer
    assert len(in_optimizer) == sum(p.requires_grad for p in model.parameters())


def test_layer_decay_one_means_equal_lrs():
    model = TransferModel(create_backbone("scratch:cnn", seed=0), 2)
    lrs = [g["lr"] for g in param_groups(model, TrainConfig(min_steps=0, lr=3e-4, layer_decay=1.0))]
    assert len(lrs) == 5 and lrs == pytest.approx([3e-4] * 5)


def _cnn_inputs(digits, n=60):
    X, y = digits
    b = create_backbone("scratch:cnn", image_size=16, seed=0)
    tr, va = from_arrays(X[:n], y[:n]), from_arrays(X[n:n + 30], y[n:n + 30])
    return b, Inputs(tr, b), y[:n], Inputs(va, b), y[n:n + 30]


def test_early_stopping_restores_best_epoch(monkeypatch, digits):
    b, tr, ytr, va, yva = _cnn_inputs(digits)
    model = TransferModel(b, 10)
    scripted = iter([0.50, 0.90, 0.30, 0.20, 0.95, 0.99])
    snapshots = []

    def fake_score(outputs, y, task):
        snapshots.append(copy.deepcopy(model.state_dict()))
        return next(scripted)

    monkeypatch.setattr(loop, "validation_score", fake_score)
    hist = train_model(model, tr, ytr, va, yva, TrainConfig(min_steps=0, epochs=6, batch_size=16, lr=1e-2, patience=2),
                       progress=False)
    assert hist.best_epoch == 2 and hist.best_metric == pytest.approx(0.90)
    assert hist.stopped_early and len(hist.epochs) == 4
    assert [e["val_metric"] for e in hist.epochs] == [0.50, 0.90, 0.30, 0.20]
    final = model.state_dict()
    for k, v in snapshots[1].items():
        assert torch.equal(final[k], v), f"{k} is not the epoch-2 weight"
    assert any(not torch.equal(final[k], snapshots[-1][k]) for k in final), "weights of the last epoch were kept"
    assert not model.training


def test_training_reduces_loss_on_real_digits(digits):
    b, tr, ytr, va, yva = _cnn_inputs(digits, n=120)
    model = TransferModel(b, 10)
    hist = train_model(model, tr, ytr, va, yva, TrainConfig(min_steps=0, epochs=4, batch_size=16, lr=3e-3, warmup=0.0,
                                                              patience=10), progress=False)
    losses = [e["train_loss"] for e in hist.epochs]
    assert losses[-1] < losses[0]
    assert all(np.isfinite(losses)) and len(hist.epochs) == 4
    assert hist.best_metric == max(e["val_metric"] for e in hist.epochs)


def test_gradient_accumulation_and_clipping_run(digits):
    b, tr, ytr, va, yva = _cnn_inputs(digits, n=40)
    model = TransferModel(b, 10)
    hist = train_model(model, tr, ytr, va, yva, TrainConfig(min_steps=0, epochs=1, batch_size=8, accumulate=3,
                                                              grad_clip=0.1), progress=False)
    assert len(hist.epochs) == 1 and np.isfinite(hist.epochs[0]["train_loss"])


def test_lp_ft_records_probe_and_keeps_bn_statistics(digits_train):
    cfg = FitConfig.from_dict(dict(backbone="packaged:efficientnet_lite0", strategy="lp-ft", image_size=32, epochs=1,
                    batch_size=32, lr=1e-3, seed=0, min_steps=0, probe_grid=[0.1, 1.0]))
    r = fit(cfg, train=digits_train, save=False, progress=False)
    probe = r.details["probe"]
    assert probe["chosen_C"] in cfg.probe_grid
    assert len(probe["val_scores"]) == len(cfg.probe_grid)
    assert probe["cache_misses"] + probe["cache_hits"] >= 2
    assert r.details["best_epoch"] in (0, 1)
    # the probe (epoch 0) competes for the best checkpoint: validation never ends worse than the probe
    assert r.val_metrics["macro_f1"] >= max(probe["val_scores"].values()) - 1e-6
    reference = create_backbone("packaged:efficientnet_lite0", image_size=32).state_dict()
    tuned = r.model.backbone.state_dict()
    stats = [k for k in reference if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in stats:
        assert torch.equal(reference[k], tuned[k]), f"BatchNorm statistic {k} moved during LP-FT"


def test_class_weights_reach_the_training(monkeypatch, digits):
    X, y = digits
    keep = np.r_[np.flatnonzero(y == 0)[:40], np.flatnonzero(y == 1)[:12], np.flatnonzero(y == 2)[:12]]
    ds = from_arrays(X[keep], y[keep])
    seen = {}
    real = STRATEGIES.get("fine-tune")

    def spy(ctx):
        seen["cw"] = ctx.class_weights
        seen["spec"] = ctx.task_spec()
        seen["y"] = ctx.y_train.copy()
        return real(ctx)

    monkeypatch.setitem(STRATEGIES._items, "fine-tune", spy)
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="fine-tune", image_size=16, epochs=1, class_weights=True,
                    min_steps=0))
    r = fit(cfg, train=ds, save=False, progress=False)
    counts = np.bincount(seen["y"], minlength=3)
    np.testing.assert_allclose(seen["cw"], len(seen["y"]) / (3 * counts))
    assert seen["cw"][0] < seen["cw"][1] and seen["cw"][1] == pytest.approx(seen["cw"][2])
    np.testing.assert_allclose(seen["spec"].class_weights, seen["cw"])
    assert loop._loss_fn(seen["spec"]).weight is not None
    assert 0 <= r.metrics["macro_f1"] <= 1

    # and with the linear probe: a balanced logistic regression
    from sklearn.linear_model import LogisticRegression

    linear = importlib.import_module("transferkit.baselines.linear")  # the one C-grid search (linear_probe uses it)

    weights_used = []

    class SpyLR(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            weights_used.append(self.class_weight)
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(linear, "LogisticRegression", SpyLR)
    cfg = FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, class_weights=True,
                    probe_grid=[1.0])
    fit(cfg, train=ds, save=False, progress=False)
    assert weights_used and set(weights_used) == {"balanced"}
    weights_used.clear()
    fit(FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[1.0]), train=ds,
        save=False, progress=False)
    assert weights_used and set(weights_used) == {None}


def test_text_fine_tune_with_frozen_embeddings(spam_records):
    """Fine-tuning a text backbone (scratch:transformer, real e-mail subjects) with its embedding group frozen."""
    texts = [f"{r['subject']}\n{r['body'][:200]}" for r in spam_records[:90]]
    labels = [r["label"] for r in spam_records[:90]]
    cfg = FitConfig.from_dict(dict(backbone="scratch:transformer", strategy="fine-tune", max_length=32, epochs=2, min_steps=0,
                    batch_size=16, lr=1e-3, freeze=1, seed=0))
    r = fit(cfg, train=from_arrays(texts, labels), save=False, progress=False)
    reference = create_backbone("scratch:transformer", max_length=32, seed=0)
    before, after = dict(reference.named_parameters()), dict(r.model.backbone.named_parameters())
    groups = reference.layer_groups()
    assert {n.split(".")[0] for n in groups[0]} == {"embed", "pos_embed"}
    for n in groups[0]:
        assert torch.equal(before[n], after[n]), n
    for g in groups[1:]:
        assert any(not torch.equal(before[n], after[n]) for n in g)
    assert r.labels["classes"] == ["ham", "spam"]
    assert 0.0 <= r.metrics["macro_f1"] <= 1.0 and r.metrics["n"] > 0


def test_length_buckets_setting_changes_text_batches_only_in_grouping():
    """Bucketed text batches hold similar lengths; unbucketed ones are uniform draws; both cover every row once."""
    import numpy as np

    from transferkit.backbones import create_backbone
    from transferkit.data import from_arrays
    from transferkit.engine.loop import EpochPlan
    from transferkit.features.inputs import Inputs

    rng = np.random.default_rng(0)
    texts = [" ".join(["w"] * int(n)) for n in rng.integers(1, 60, size=96)]
    bb = create_backbone("scratch:transformer", max_length=64, seed=0)
    inputs = Inputs(from_arrays(texts, np.arange(96) % 2), bb)
    lens = inputs.lengths()
    spread = {}
    for buckets in (True, False):
        batches = EpochPlan(inputs, 16, 1, seed=3, buckets=buckets).epoch(1)
        assert sorted(np.concatenate(batches).tolist()) == list(range(96))
        spread[buckets] = np.mean([lens[b].max() - lens[b].min() for b in batches])
    assert spread[True] < spread[False] / 3
