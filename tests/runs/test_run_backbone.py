"""``run:PATH``: parameter transfer from a scratch CNN trained on MNIST (source) to scikit-learn digits (target)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.engine.loop import predict_outputs
from transferkit.features.inputs import Inputs
from transferkit.pipeline import fit
from transferkit.runs import load_run


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, mnist):
    """scratch:cnn fine-tuned on 300 MNIST digits (all ten classes)."""
    X, y = mnist
    idx = np.random.default_rng(3).permutation(len(y))[:300]
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="fine-tune", image_size=32, epochs=1, min_steps=0, lr=2e-3,
                    runs_dir=str(tmp_path_factory.mktemp("source")), name="mnist-cnn"))
    return fit(cfg, train=from_arrays(X[idx], y[idx]), progress=False).run_dir


@pytest.fixture(scope="module")
def target_digits(digits):
    X, y = digits
    idx = np.random.default_rng(4).permutation(len(y))
    return from_arrays(X[idx[:150]], y[idx[:150]]), from_arrays(X[idx[150:180]], y[idx[150:180]])


def _backbone_state(run_dir):
    return {k: v.clone() for k, v in load_run(run_dir).model.backbone.state_dict().items()}


def test_run_backbone_carries_the_source_weights_and_lineage(source_run):
    b = create_backbone(f"run:{source_run}")
    assert b.meta.spec == f"run:{source_run}" and b.meta.source == "run" and b.meta.pretrained
    assert b.meta.modality == "image" and b.meta.input_size == 32
    src = _backbone_state(source_run)
    for k, v in b.state_dict().items():
        assert torch.equal(v, src[k]), k
    assert b.lineage[0]["run"] == str(source_run)
    assert b.lineage[0]["backbone"] == "scratch:cnn" and b.lineage[0]["strategy"] == "fine-tune"


def test_run_backbone_exposes_the_parent_head_for_leep_and_nce(tmp_path, source_run, target_digits):
    """``Backbone.head_logits`` of a run: backbone is its parent run's classification head on its features (kept
    outside the module tree); the ranking's LEEP / NCE use it, as the head applied to the cached features."""
    from transferkit.features import FeatureCache
    from transferkit.ranking.rank import rank_backbones
    from transferkit.ranking.scores import leep, nce, softmax

    train, _ = target_digits
    b = create_backbone(f"run:{source_run}", image_size=32)
    assert set(b.state_dict()) == set(_backbone_state(source_run))  # the head is not a submodule
    assert create_backbone("scratch:cnn", image_size=32).head_logits(torch.zeros(2, b.meta.feature_dim)) is None
    r = rank_backbones(train, [f"run:{source_run}"], "leep", metrics=["nce"], image_size=32, baseline=False,
                       cache=FeatureCache(tmp_path))
    e = r.entries[0]
    assert e.available and e.note == "source head: run's 10-class head"
    feats = FeatureCache(tmp_path).get_or_compute(b, Inputs(train, b), progress=False)
    with torch.inference_mode():
        logits = load_run(source_run).model.head(torch.as_tensor(feats)).double().numpy()
    assert np.allclose(b.head_logits(torch.as_tensor(feats)).numpy(), logits)
    y = np.asarray(train.y)
    assert e.scores["leep"] == pytest.approx(leep(softmax(logits), y))
    assert e.scores["nce"] == pytest.approx(nce(softmax(logits), y))


def test_linear_probe_on_run_backbone(tmp_path, source_run, target_digits):
    train, hold = target_digits
    cfg = FitConfig(backbone=f"run:{source_run}", strategy="linear-probe", image_size=32,
                    probe_grid=[0.01, 0.1, 1.0], runs_dir=str(tmp_path), name="digits-lp")
    r = fit(cfg, train=train, progress=False)
    # the frozen backbone is exactly the source run's
    src = _backbone_state(source_run)
    for k, v in r.model.backbone.state_dict().items():
        assert torch.equal(v, src[k]), k
    # features learned on MNIST transfer to 8x8 digits well above chance (0.1)
    assert r.metrics["accuracy"] > 0.3, r.metrics["accuracy"]

    info = json.loads((r.run_dir / "run.json").read_text())
    assert info["lineage"][0]["run"] == str(source_run)
    assert info["lineage"][0]["backbone"] == "scratch:cnn"
    assert json.loads((r.run_dir / "backbone.json").read_text())["spec"] == f"run:{source_run}"

    loaded = load_run(r.run_dir)
    assert loaded.label_map.classes == list(range(10))
    np.testing.assert_allclose(predict_outputs(loaded.model, Inputs(hold, loaded.model.backbone)),
                               predict_outputs(r.model, Inputs(hold, r.model.backbone)), atol=1e-5)


def test_fine_tune_run_backbone_with_frozen_bottom_groups(tmp_path, source_run, target_digits):
    train, hold = target_digits
    cfg = FitConfig.from_dict(dict(backbone=f"run:{source_run}", strategy="fine-tune", freeze=2, image_size=32, epochs=1,
                    min_steps=0, lr=2e-3, runs_dir=str(tmp_path), name="digits-ft"))
    r = fit(cfg, train=train, progress=False)
    src = _backbone_state(source_run)
    tuned = r.model.backbone.state_dict()
    groups = r.model.backbone.layer_groups()
    assert len(groups) == 4
    for n in groups[0] + groups[1]:
        assert torch.equal(tuned[n], src[n]), f"frozen {n} changed"
    for n in groups[2] + groups[3]:
        assert not torch.equal(tuned[n], src[n]), f"trainable {n} did not change"
    # BatchNorm statistics of the frozen blocks are kept too
    for k in src:
        if k.startswith(("blocks.0.", "blocks.1.")) and k.endswith(("running_mean", "running_var")):
            assert torch.equal(tuned[k], src[k]), k

    info = json.loads((r.run_dir / "run.json").read_text())
    assert [step["run"] for step in info["lineage"]] == [str(source_run)]
    loaded = load_run(r.run_dir)
    np.testing.assert_allclose(predict_outputs(loaded.model, Inputs(hold, loaded.model.backbone)),
                               predict_outputs(r.model, Inputs(hold, r.model.backbone)), atol=1e-5)
    # the source run itself is untouched by the transfer
    np.testing.assert_equal({k: v.numpy() for k, v in _backbone_state(source_run).items()},
                            {k: v.numpy() for k, v in src.items()})


def test_lineage_chains_through_two_transfers(tmp_path, source_run, target_digits):
    train, _ = target_digits
    mid = fit(FitConfig(backbone=f"run:{source_run}", strategy="linear-probe", image_size=32, probe_grid=[1.0],
                        runs_dir=str(tmp_path), name="mid"), train=train, progress=False).run_dir
    last = fit(FitConfig(backbone=f"run:{mid}", strategy="linear-probe", image_size=32, probe_grid=[1.0],
                         runs_dir=str(tmp_path), name="last"), train=train, progress=False).run_dir
    lineage = json.loads((last / "run.json").read_text())["lineage"]
    assert [step["run"] for step in lineage] == [str(mid), str(source_run)]
    assert lineage[0]["backbone"] == f"run:{source_run}"


def test_run_backbone_of_missing_run_is_a_one_line_error(tmp_path):
    from transferkit.errors import DataError

    with pytest.raises(DataError, match="does not exist"):
        create_backbone(f"run:{tmp_path / 'never-fitted'}")
