"""Contract tests over every registered strategy (``transferkit.strategies.STRATEGIES``).

For each strategy and each modality it takes (``traits(name).modalities``): ``fit(..., save=True)`` on a tiny real
dataset (60 scikit-learn digits at 16 px with ``scratch:cnn``; 60 SpamAssassin e-mails with
``scratch:transformer``), then

* the run directory holds ``metrics.json`` (whose test metrics are the fit's), ``report.md`` and ``config.yaml``;
* ``config.yaml`` round-trips through ``FitConfig.from_yaml`` (and equals ``load_run(...).config``), keeping the
  settings given (a chooser such as ``auto`` saves the strategy it chose, a registered one);
* ``load_run(run_dir).model`` gives the in-memory model's outputs on held-out rows (atol 1e-5), through its own
  rebuilt preprocessing;
* a strategy refuses a modality it does not take with a one-line ``ConfigError``.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from transferkit.config import FitConfig
from transferkit.data import Dataset, from_arrays
from transferkit.errors import ConfigError
from transferkit.features import Inputs
from transferkit.pipeline import fit
from transferkit.runs import load_run
from transferkit.strategies import STRATEGIES, traits

from tests.conftest import stratified_pick

N_TRAIN, N_HELD = 60, 20
BACKBONE = {"image": "scratch:cnn", "text": "scratch:transformer"}
MODALITIES = ("image", "text")


def _cases():
    return [pytest.param(name, m, id=f"{name}-{m}") for name in STRATEGIES.names() for m in MODALITIES
            if m in traits(name).modalities]


def _refused():
    return [pytest.param(name, m, id=f"{name}-{m}") for name in STRATEGIES.names() for m in MODALITIES
            if m not in traits(name).modalities]


@pytest.fixture(scope="module")
def data(digits, spam_records) -> dict[str, tuple[Dataset, Dataset]]:
    """(train, held-out) per modality: disjoint rows of real data."""
    X, y = digits
    idx = stratified_pick(y, (N_TRAIN + N_HELD) // 10, seed=7)
    idx = np.random.default_rng(7).permutation(idx)
    tr, held = idx[:N_TRAIN], idx[N_TRAIN:]
    recs = spam_records[:N_TRAIN + N_HELD]
    texts = [r["subject"] + "\n" + r["body"] for r in recs]
    labels = [r["label"] for r in recs]
    return {"image": (from_arrays(X[tr], y[tr], value_max=16), from_arrays(X[held], y[held], value_max=16)),
            "text": (from_arrays(texts[:N_TRAIN], labels[:N_TRAIN]), from_arrays(texts[N_TRAIN:], labels[N_TRAIN:]))}


SETTINGS = dict(seed=3, image_size=16, max_length=32, epochs=1, batch_size=16, min_steps=0, patience=1,
                checkpoint_every=0, probe_grid=[0.1, 1.0], num_threads=1)


def _config(name: str, modality: str, runs_dir) -> FitConfig:
    # from_dict places training settings (epochs, batch_size, ...) wherever FitConfig keeps them (flat or nested)
    return FitConfig.from_dict({"backbone": BACKBONE[modality], "strategy": name, **SETTINGS,
                                "runs_dir": str(runs_dir), "name": f"{name}-{modality}"})


def _setting(cfg: FitConfig, key: str):
    """A setting of ``cfg`` by its flat name (``epochs`` may sit in a nested ``training`` config)."""
    if hasattr(cfg, key):
        return getattr(cfg, key)
    return getattr(cfg.training, key)


def _outputs(model, ds: Dataset) -> np.ndarray:
    inputs = Inputs(ds, model.backbone)
    with torch.inference_mode():
        return model.eval()(inputs.batch(np.arange(len(ds)))).float().numpy()


@pytest.mark.parametrize("name, modality", _cases())
def test_fit_save_load_round_trip(name, modality, data, tmp_path):
    train, held = data[modality]
    cfg = _config(name, modality, tmp_path / "runs")
    res = fit(cfg, train=train, save=True, progress=False)
    run_dir = res.run_dir
    assert run_dir is not None and run_dir.is_dir() and run_dir.name == cfg.name
    assert not list(run_dir.parent.glob(".*partial*")), "a partial directory was left behind"

    # the run's files
    for f in ("metrics.json", "report.md", "config.yaml"):
        assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"] == json.loads(json.dumps(res.metrics))
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Traceback" not in report

    # config.yaml round-trips and keeps what was asked
    text = (run_dir / "config.yaml").read_text(encoding="utf-8")
    saved = FitConfig.from_yaml(run_dir / "config.yaml")
    assert saved.to_yaml() == text
    assert FitConfig.from_dict(saved.to_dict()) == saved
    saved.validate()
    assert saved.strategy in STRATEGIES
    if not traits(name).chooser:
        assert saved.strategy == name
    assert f"`{saved.strategy}`" in report
    for k, v in SETTINGS.items():
        assert _setting(saved, k) == v, k
    if traits(name).own_backbone is None:
        assert saved.backbone == cfg.backbone

    # the loaded model predicts like the in-memory one, on rows it never saw
    run = load_run(run_dir)
    assert run.config == saved
    assert run.modality == modality and run.model.backbone.meta.spec == res.model.backbone.meta.spec
    assert run.labels == json.loads(json.dumps(res.labels))
    want, got = _outputs(res.model, held), _outputs(run.model, held)
    assert want.shape == (len(held), len(res.labels["classes"]))
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, modality", _refused())
def test_unsupported_modality_is_a_one_line_config_error(name, modality, data, tmp_path):
    train, _ = data[modality]
    with pytest.raises(ConfigError) as e:
        fit(_config(name, modality, tmp_path / "runs"), train=train, save=True, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and re.search(name, msg), msg
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a refused fit left a (partial) run directory behind"
