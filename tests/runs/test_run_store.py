"""Run directories: every file written, atomic replace / abort, safe loading with identical predictions."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import assert_png
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.engine.loop import predict_outputs
from transferkit.errors import ConfigError, DataError
from transferkit.features.inputs import Inputs
from transferkit.pipeline import fit
from transferkit.runs import load_run
from transferkit.runs.predict import predict_dataset
from transferkit.strategies import STRATEGIES

RUN_FILES = ("model.safetensors", "config.yaml", "labels.json", "backbone.json", "metrics.json", "report.md",
             "confusion_matrix.png", "run.json", "fit.log")


def _snapshot(directory):
    """{relative path: sha256} of every file below ``directory``."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def digit_parts(digits):
    """Training digits (stratified, 15 per class) and a disjoint hold-out set."""
    X, y = digits
    rng = np.random.default_rng(7)
    order = rng.permutation(len(y))
    train, hold = order[:150], order[150:190]
    return from_arrays(X[train], y[train]), from_arrays(X[hold], y[hold])


@pytest.fixture(scope="module")
def ft_run(tmp_path_factory, digit_parts):
    """A fine-tuned packaged EfficientNet-Lite0 run (one epoch at 32 px)."""
    train, _ = digit_parts
    cfg = FitConfig.from_dict(dict(backbone="packaged:efficientnet_lite0", strategy="fine-tune", image_size=32, epochs=1,
                    min_steps=0, lr=1e-3, runs_dir=str(tmp_path_factory.mktemp("runs")), name="lite-ft"))
    return cfg, fit(cfg, train=train, progress=False)


def test_fit_writes_every_file(ft_run):
    cfg, r = ft_run
    run = r.run_dir
    assert run == Path(cfg.runs_dir) / "lite-ft"
    for name in RUN_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert_png(run / "confusion_matrix.png")
    assert_png(run / "learning_curve.png")
    # tensorboard event file for the fine-tune
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    # nothing half-written next to it
    assert sorted(p.name for p in run.parent.iterdir()) == ["lite-ft"]
    assert not list(run.rglob("*.tmp"))

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["name"] == "lite-ft" and info["head"] == "linear"
    assert info["seed"] == 0 and info["lineage"] == []
    assert {"torch", "timm", "transformers", "sklearn", "transferkit"} <= set(info["environment"])

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved == cfg.to_dict()
    assert FitConfig.from_yaml(run / "config.yaml") == cfg

    assert json.loads((run / "labels.json").read_text()) == {"task": "classification", "classes": list(range(10))}
    meta = json.loads((run / "backbone.json").read_text())
    assert meta["spec"] == "packaged:efficientnet_lite0" and meta["feature_dim"] == 1280
    assert meta["preprocessing"]["size"] == 32 and meta["pretrained"] is True

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(r.metrics["accuracy"])
    assert metrics["val"]["macro_f1"] == pytest.approx(r.val_metrics["macro_f1"])
    sizes = metrics["details"]["sizes"]
    assert sum(sizes.values()) == 150 and min(sizes.values()) >= 10 and sizes["train"] > sizes["val"]
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1] and np.isfinite(history[0]["train_loss"])

    log = (run / "fit.log").read_text()
    assert "data: train" in log and "test metrics" in log


def test_load_run_gives_identical_predictions(ft_run, digit_parts):
    cfg, r = ft_run
    _, hold = digit_parts
    loaded = load_run(r.run_dir)
    assert loaded.config == cfg and loaded.modality == "image"
    assert loaded.label_map.classes == list(range(10))
    assert not loaded.model.training
    before = predict_outputs(r.model, Inputs(hold, r.model.backbone))
    after = predict_outputs(loaded.model, Inputs(hold, loaded.model.backbone))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    # every tensor came back, buffers (BatchNorm statistics) included
    ref = r.model.state_dict()
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    rows = predict_dataset(loaded, hold, top_k=2)
    assert [row["label"] for row in rows] == list(before.argmax(1))
    assert all(row["top1_probability"] >= row["top2_probability"] for row in rows)


@pytest.fixture
def cnn_cfg(tmp_path):
    def make(**kw):
        base = dict(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[0.1, 1.0],
                    runs_dir=str(tmp_path / "runs"), name="cnn")
        return FitConfig.from_dict({**base, **kw})

    return make


def test_existing_run_is_kept_without_overwrite_and_replaced_with_it(cnn_cfg, digit_parts):
    train, _ = digit_parts
    first = fit(cnn_cfg(), train=train, progress=False).run_dir
    before = _snapshot(first)
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):
        fit(cnn_cfg(seed=1), train=train, progress=False)
    assert _snapshot(first) == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["cnn"]

    second = fit(cnn_cfg(seed=1, overwrite=True), train=train, progress=False).run_dir
    assert second == first
    assert yaml.safe_load((second / "config.yaml").read_text())["seed"] == 1
    assert _snapshot(second) != before
    assert sorted(p.name for p in first.parent.iterdir()) == ["cnn"], "no .old / .partial leftovers"


@pytest.mark.parametrize("exc", [RuntimeError("boom in the strategy"), KeyboardInterrupt()])
def test_failure_mid_fit_leaves_no_directory(monkeypatch, cnn_cfg, digit_parts, exc):
    train, _ = digit_parts

    def broken(ctx):
        assert (ctx.log_dir.parent / "fit.log").exists(), "the fit is being written to a partial directory"
        raise exc

    monkeypatch.setitem(STRATEGIES._items, "linear-probe", broken)
    with pytest.raises(type(exc)):
        fit(cnn_cfg(), train=train, progress=False)
    runs = Path(cnn_cfg().runs_dir)
    assert list(runs.iterdir()) == [], "neither the run nor a partial directory may remain"


def test_failed_overwrite_keeps_the_old_run(monkeypatch, cnn_cfg, digit_parts):
    train, _ = digit_parts
    run = fit(cnn_cfg(), train=train, progress=False).run_dir
    before = _snapshot(run)

    def broken(ctx):
        raise RuntimeError("fails half-way")

    monkeypatch.setitem(STRATEGIES._items, "linear-probe", broken)
    with pytest.raises(RuntimeError):
        fit(cnn_cfg(overwrite=True, seed=3), train=train, progress=False)
    assert _snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["cnn"]
    load_run(run)


def test_load_run_refuses_missing_and_partial_directories(tmp_path, cnn_cfg, digit_parts):
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nope")
    train, _ = digit_parts
    run = fit(cnn_cfg(), train=train, progress=False).run_dir
    (run / "run.json").unlink()
    with pytest.raises(DataError, match="not a complete run"):
        load_run(run)


def test_save_false_writes_nothing(tmp_path, cnn_cfg, digit_parts):
    train, _ = digit_parts
    r = fit(cnn_cfg(), train=train, progress=False, save=False)
    assert r.run_dir is None and 0.0 <= r.metrics["accuracy"] <= 1.0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture
def tiny_bert(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_dir

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(d)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(d)
    return d


def test_hf_text_run_round_trip_is_self_contained(tmp_path, tiny_bert, spam_records):
    """A run on an hf: backbone stores config + tokenizer, so it loads after the source folder is gone."""
    import shutil

    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records[:100]]
    labels = [r["label"] for r in spam_records[:100]]
    cfg = FitConfig(backbone=f"hf:{tiny_bert}", strategy="linear-probe", max_length=24, probe_grid=[0.1, 1.0],
                    runs_dir=str(tmp_path / "runs"), name="bert")
    r = fit(cfg, train=from_arrays(texts, labels), progress=False)
    files = r.run_dir / "backbone_files"
    assert (files / "config.json").exists() and list(files.glob("tokenizer*"))
    shutil.rmtree(tiny_bert)  # the run must not need the original directory
    loaded = load_run(r.run_dir)
    probe = from_arrays([r2["subject"] for r2 in spam_records[100:120]])
    np.testing.assert_allclose(predict_outputs(loaded.model, Inputs(probe, loaded.model.backbone)),
                               predict_outputs(r.model, Inputs(probe, r.model.backbone)), atol=1e-5)
    assert loaded.model.backbone.meta.spec == f"hf:{tiny_bert}"
    assert loaded.model.backbone.meta.max_length == 24
