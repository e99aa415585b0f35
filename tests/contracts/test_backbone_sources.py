"""Contract tests over every registered backbone source (``transferkit.backbones.SOURCES``).

Each source has at least one small case in :data:`CASES`; a source registered without one fails
:func:`test_every_source_has_a_case`, so a new source cannot slip through untested. Every case is checked for:

* ``meta.feature_dim`` equals the width of the features on a real batch (``Inputs(ds, backbone).batch(idx)``),
  and the features are finite and do not depend on which other rows share the batch;
* ``meta.modality`` matches the input kind (and the preprocessor is of that kind);
* ``layer_groups()`` holds each parameter at most once, and leaves out only parameters that the features do
  not use (a kept source classifier);
* ``meta.to_dict()`` and ``describe_preprocessing()`` are JSON-serialisable;
* ``source_logits`` / ``head_logits`` return None or a finite [N, C] tensor (C = ``meta.source_classes`` if set).

Nothing here downloads: ``timm:`` / ``torchvision:`` are built with ``pretrained=False``, ``hf:`` reads the
packaged MiniLM directory, ``run:`` a tiny run fitted here, ``classical:`` is fitted on the batch's data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from transferkit.backbones import SOURCES, create_backbone
from transferkit.backbones.base import Backbone, ImagePreprocessor
from transferkit.data import Dataset, from_arrays
from transferkit.features import Inputs

ROWS = 6


@dataclass(frozen=True)
class Case:
    """One backbone to build for a source. ``spec`` may name ``{minilm_dir}`` or ``{image_run}`` (resolved by
    fixtures); ``fixture`` reuses a session-wide backbone instead of building one; ``fit_on_data``: the backbone
    is a featuriser fitted on the data first (``classical:``)."""

    spec: str
    modality: str
    pretrained: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    fixture: str | None = None
    fit_on_data: bool = False

    @property
    def id(self) -> str:
        return self.spec.replace("{", "").replace("}", "")


# One entry per registered source (keyed by source name).
CASES: dict[str, list[Case]] = {
    "classical": [Case("classical:pixels", "image", fit_on_data=True),
                  Case("classical:tfidf", "text", fit_on_data=True)],
    "hf": [Case("hf:{minilm_dir}", "text", options={"max_length": 32})],
    "packaged": [Case("packaged:efficientnet_lite0", "image", fixture="lite0"),
                 Case("packaged:minilm-l6", "text", fixture="minilm")],
    "run": [Case("run:{image_run}", "image")],
    "scratch": [Case("scratch:cnn", "image", options={"image_size": 16, "seed": 0}),
                Case("scratch:transformer", "text", options={"max_length": 32, "seed": 0}),
                Case("scratch:test_resnet", "image", options={"image_size": 32, "seed": 0})],
    "timm": [Case("timm:test_resnet", "image", pretrained=False, options={"image_size": 32})],
    "torchvision": [Case("torchvision:mobilenet_v3_small", "image", pretrained=False, options={"image_size": 32})],
}


def _params():
    out = []
    for source in SOURCES.names():
        cases = CASES.get(source) or [None]
        for case in cases:
            out.append(pytest.param(source, case, id=f"{source}-{case.id if case else 'MISSING'}"))
    return out


def test_every_source_has_a_case():
    missing = [s for s in SOURCES.names() if not CASES.get(s)]
    assert not missing, f"backbone source(s) {missing} registered without a contract case in CASES"
    stale = sorted(set(CASES) - set(SOURCES.names()))
    assert not stale, f"CASES names source(s) {stale} that are no longer registered"
    for source, cases in CASES.items():
        assert all(c.spec.split(":", 1)[0] == source for c in cases), source


# ---------------------------------------------------------------------------------------------------------
# data and backbones
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def datasets(digits, spam_records) -> dict[str, Dataset]:
    X, y = digits
    recs = spam_records[:ROWS]
    # texts of clearly different lengths, so a batch is padded
    texts = [r["subject"] + ("\n" + r["body"] if i % 2 else "") for i, r in enumerate(recs)]
    return {"image": from_arrays(X[:ROWS], y[:ROWS], value_max=16),
            "text": from_arrays(texts, [r["label"] for r in recs])}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, digits):
    """A tiny saved run (scratch:cnn, 16 px, linear probe on 60 digits) for the ``run:`` source."""
    from transferkit.config import FitConfig
    from transferkit.pipeline import fit

    X, y = digits
    cfg = FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[1.0],
                    runs_dir=str(tmp_path_factory.mktemp("contract_runs")), name="parent")
    return fit(cfg, train=from_arrays(X[:60], y[:60], value_max=16), progress=False).run_dir


@pytest.fixture(scope="module")
def minilm_dir():
    from transferkit.backbones.packaged import minilm_dir as where

    return where()


def _build(case: Case, request, ds: Dataset) -> Backbone:
    if case.fixture is not None:
        return request.getfixturevalue(case.fixture)
    names = {k: str(request.getfixturevalue(k)) for k in ("minilm_dir", "image_run") if "{" + k + "}" in case.spec}
    b = create_backbone(case.spec.format(**names), pretrained=case.pretrained, **case.options).eval()
    if case.fit_on_data:
        from transferkit.baselines.classical import fit_featuriser

        fit_featuriser(b, ds)
        b.eval()
    return b


@pytest.fixture(scope="module")
def built(request, datasets):
    cache: dict[tuple[str, str], Backbone] = {}

    def get(source: str, case: Case | None) -> tuple[Backbone, Dataset]:
        if case is None:
            pytest.fail(f"backbone source '{source}' has no contract case in CASES (add one)")
        ds = datasets[case.modality]
        key = (source, case.spec)
        if key not in cache:
            cache[key] = _build(case, request, ds)
        return cache[key], ds

    return get


def _features(b: Backbone, ds: Dataset, idx) -> torch.Tensor:
    with torch.inference_mode():
        return b(Inputs(ds, b).batch(np.asarray(idx))).float()


# ---------------------------------------------------------------------------------------------------------
# the contract
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source, case", _params())
def test_feature_width_equals_declared_dim(source, case, built):
    b, ds = built(source, case)
    f = _features(b, ds, np.arange(ROWS))
    assert f.ndim == 2 and f.shape == (ROWS, b.meta.feature_dim), (tuple(f.shape), b.meta.feature_dim)
    assert b.meta.feature_dim > 0
    assert torch.isfinite(f).all()
    assert float(f.std(0).max()) > 0, "features do not depend on the input"
    # a row's features do not depend on the other rows of its batch (eval mode, padding masked)
    part = _features(b, ds, [1, 2])
    np.testing.assert_allclose(part.numpy(), f[1:3].numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("source, case", _params())
def test_modality_matches_input_kind(source, case, built):
    b, ds = built(source, case)
    assert b.meta.modality == case.modality == ds.modality
    assert b.meta.spec.split(":", 1)[0] == source
    if b.meta.modality == "image":
        assert isinstance(b.preprocess, ImagePreprocessor)
        assert b.meta.input_size == b.preprocess.size
        assert tuple(Inputs(ds, b).batch(np.arange(2)).shape) == (2, 3, b.meta.input_size, b.meta.input_size)
    else:
        assert not isinstance(b.preprocess, ImagePreprocessor)
        batch = Inputs(ds, b).batch(np.arange(2), texts=False)
        assert {"input_ids", "attention_mask"} <= set(batch)
    other = "text" if ds.modality == "image" else "image"
    from transferkit.errors import DataError

    wrong = from_arrays(np.zeros((2, 8, 8), np.uint8), [0, 1]) if other == "image" else from_arrays(["a", "b"])
    with pytest.raises(DataError, match=f"takes {b.meta.modality}s"):
        Inputs(wrong, b)


@pytest.mark.parametrize("source, case", _params())
def test_layer_groups_cover_each_used_parameter_once(source, case, built):
    b, ds = built(source, case)
    groups = b.layer_groups()
    params = dict(b.named_parameters())
    flat = [n for g in groups for n in g]
    assert len(flat) == len(set(flat)), "a parameter is in two layer groups"
    assert set(flat) <= set(params), set(flat) - set(params)
    if params:
        assert groups and all(groups), "an empty layer group"
    left_out = [n for n in params if n not in set(flat)]
    if left_out:  # only parameters the features do not use (a kept source classifier) may stay outside
        x = Inputs(ds, b).batch(np.arange(2), texts=False)
        with torch.enable_grad():
            f = b(x)
            grads = torch.autograd.grad(f.float().sum(), [params[n] for n in left_out], allow_unused=True)
        used = [n for n, g in zip(left_out, grads) if g is not None]
        assert not used, f"parameters used by the features but in no layer group: {used[:5]}"


@pytest.mark.parametrize("source, case", _params())
def test_metadata_and_preprocessing_are_json(source, case, built):
    b, _ = built(source, case)
    meta = json.loads(json.dumps(b.meta.to_dict()))
    assert meta["feature_dim"] == b.meta.feature_dim and meta["modality"] == b.meta.modality
    assert meta["spec"] == b.meta.spec
    pre = b.describe_preprocessing()
    assert isinstance(pre, dict) and pre
    assert json.loads(json.dumps(pre)) == pre


@pytest.mark.parametrize("source, case", _params())
def test_source_and_head_logits_are_none_or_n_by_c(source, case, built):
    b, ds = built(source, case)
    x = Inputs(ds, b).batch(np.arange(3), texts=False)
    with torch.inference_mode():
        feats = b(x)
        outs = {"source_logits": b.source_logits(x) if hasattr(b, "source_logits") else None,
                "head_logits": b.head_logits(feats) if hasattr(b, "head_logits") else None}
    for what, out in outs.items():
        if out is None:
            continue
        assert isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 3, (what, getattr(out, "shape", out))
        assert out.shape[1] >= 2 and torch.isfinite(out).all(), what
    if outs["source_logits"] is not None and b.meta.source_classes:
        assert outs["source_logits"].shape[1] == b.meta.source_classes
