"""Contract tests over every registered domain-adaptation method (``transferkit.adapt.METHODS``) and every
unsupervised selection criterion (``transferkit.adapt.CRITERIA``).

Per method, its components (``build_components(name, MethodContext(...))``) on random features of two domains:

* a component is an ``nn.Module``; a post-hoc one (AdaBN) has no trainable parameters and is flagged
  ``post_hoc``; every other one returns a finite scalar loss (at the start, middle and end of training) with
  finite float logs;
* the loss is differentiable: gradients reach the target features (logits are a linear head of the features, so
  logit-only losses count) and every parameter of the component itself, all finite;
* its ``extra_state()`` is JSON and, loaded into a fresh component, gives the same loss (checkpoint / resume);
* a component that wants pseudo-label refreshes stays finite when no target example is confident enough.

Per method and setting (digits -> intensity-inverted digits with ``scratch:cnn`` end-to-end and frozen; full
SpamAssassin e-mails -> their bodies alone with ``scratch:transformer``), ``adapt(..., save=False)`` either
succeeds, with ``metrics['adapted']`` exactly when a target test set is given, or raises a one-line
``ConfigError`` naming the method (e.g. AdaBN without BatchNorm), never anything else. A post-hoc method leaves
every trained weight as a source-only checkpoint had it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.adapt import CRITERIA, METHODS, AdaptConfig, adapt
from transferkit.adapt.methods import Component, MethodContext, Step, build_components
from transferkit.adapt.selection import choose, criterion_score
from transferkit.data import Dataset, from_arrays
from transferkit.errors import ConfigError

from tests.conftest import stratified_pick

D, C, N = 16, 3, 8


def _components(name: str, **ctx) -> list[Component]:
    comps = build_components(name, MethodContext(D, C, seed=0, **ctx))
    assert all(isinstance(c, Component) and isinstance(c, nn.Module) for c in comps), comps
    return comps


def _step(progress: float = 0.5, seed: int = 0, scale: float = 1.0) -> tuple[Step, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(N, D, generator=g).requires_grad_(True)
    f_t = (torch.randn(N, D, generator=g) * 1.5 + 0.5).requires_grad_(True)
    w = torch.randn(D, C, generator=g) * scale
    return Step(f_s, f_s @ w, f_t, f_t @ w, np.arange(N), progress), f_s, f_t


def _probs(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.detach(), 1).numpy().astype(np.float64)


def _prepare(comp: Component, s: Step) -> None:
    if comp.wants_refresh:
        info = comp.refresh(_probs(s.logits_t))
        assert all(np.isfinite(float(v)) for v in info.values()), info


def _trained(comps: list[Component]) -> list[Component]:
    return [c for c in comps if not c.post_hoc]


def _losses(name: str, **ctx) -> list[Component]:
    """The components of ``name`` that add a training loss."""
    comps = _trained(_components(name, **ctx))
    assert comps, name
    return comps


def _methods(keep) -> list[str]:
    """The registered methods with a component for which ``keep(component)`` holds (decided at collection)."""
    return [n for n in METHODS.names() if any(keep(c) for c in _components(n))]


LOSS_METHODS = _methods(lambda c: not c.post_hoc)  # those adding a training loss
POST_HOC_METHODS = _methods(lambda c: c.post_hoc)
REFRESHING_METHODS = _methods(lambda c: not c.post_hoc and c.wants_refresh)


# ---------------------------------------------------------------------------------------------------------
# the loss contract
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_documented_and_parses_alone(name):
    from transferkit.adapt.methods import parse_method

    assert METHODS.help(name).strip(), f"method '{name}' has no help text for `transferkit adapt --help`"
    assert parse_method(name) == [name]


@pytest.mark.parametrize("name", POST_HOC_METHODS)
def test_post_hoc_components_have_nothing_to_train(name):
    for comp in [c for c in _components(name) if c.post_hoc]:
        assert not any(p.requires_grad for p in comp.parameters()), f"post-hoc '{name}' has trainable weights"
        assert not comp.wants_refresh


def test_adabn_is_flagged_post_hoc():
    if "adabn" not in METHODS:
        pytest.skip("no 'adabn' method registered")
    comps = _components("adabn")
    assert comps and all(c.post_hoc for c in comps)


@pytest.mark.parametrize("name", LOSS_METHODS)
@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_loss_is_a_finite_scalar(name, progress):
    for comp in _losses(name, threshold=0.0):
        s, _, _ = _step(progress)
        _prepare(comp, s)
        loss, logs = comp.loss(s)
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and torch.isfinite(loss), (name, loss)
        assert isinstance(logs, dict) and logs
        json.dumps(logs)
        assert all(isinstance(v, float) and np.isfinite(v) for v in logs.values()), logs


@pytest.mark.parametrize("name", LOSS_METHODS)
def test_loss_is_differentiable(name):
    for comp in _losses(name, threshold=0.0):  # threshold 0: self-training gets pseudo-labels
        s, f_s, f_t = _step(0.5)
        _prepare(comp, s)
        loss, _ = comp.loss(s)
        assert loss.requires_grad, f"'{name}' loss has no gradient path"
        own = [p for p in comp.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [f_s, f_t, *own], allow_unused=True)
        g_s, g_t, g_own = grads[0], grads[1], grads[2:]
        assert g_t is not None and torch.isfinite(g_t).all() and g_t.abs().sum() > 0, \
            f"no gradient from '{name}' reaches the target features"
        assert g_s is None or torch.isfinite(g_s).all()
        for (pname, _), g in zip([(n, p) for n, p in comp.named_parameters() if p.requires_grad], g_own):
            assert g is not None and torch.isfinite(g).all(), f"'{name}': no finite gradient for {pname}"
        if own:
            assert any(g.abs().sum() > 0 for g in g_own), f"'{name}': its own parameters get zero gradient"


@pytest.mark.parametrize("name", LOSS_METHODS)
def test_extra_state_is_json_and_restores_the_loss(name):
    for a, b in zip(_losses(name, threshold=0.0), _losses(name, threshold=0.0)):
        s, _, _ = _step(0.5)
        _prepare(a, s)
        a.eval(), b.eval()  # no dropout: the two must compute the same thing
        state = json.loads(json.dumps(a.extra_state()))
        b.load_state_dict(a.state_dict())
        b.load_extra_state(state)
        with torch.no_grad():
            la, _ = a.loss(s)
            lb, _ = b.loss(s)
        assert torch.allclose(la, lb, atol=1e-6), (name, la, lb)


@pytest.mark.parametrize("name", REFRESHING_METHODS)
def test_refreshing_components_stay_finite_without_confident_targets(name):
    for comp in [c for c in _trained(_components(name, threshold=0.99)) if c.wants_refresh]:
        s, _, f_t = _step(0.5, scale=1e-3)  # near-uniform predictions: nothing reaches the threshold
        _prepare(comp, s)
        loss, _ = comp.loss(s)
        assert torch.isfinite(loss) and loss.requires_grad
        (g,) = torch.autograd.grad(loss, [f_t], allow_unused=True)
        assert g is None or torch.isfinite(g).all()


# ---------------------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def domains(digits, spam_records) -> dict[str, tuple[Dataset, Dataset, Dataset]]:
    """(labelled source, unlabelled target, labelled target test) per modality, from real data."""
    X, y = digits
    idx = np.random.default_rng(11).permutation(stratified_pick(y, 12, seed=11))
    s, t, te = idx[:60], idx[60:90], idx[90:120]
    inv = 16.0 - X  # the target domain: the same digits, intensity inverted
    image = (from_arrays(X[s], y[s], value_max=16), from_arrays(inv[t], y[t], value_max=16),
             from_arrays(inv[te], y[te], value_max=16))
    recs = spam_records[:100]
    full = [r["subject"] + "\n" + r["body"] for r in recs]
    bodies = [r["body"] for r in recs]
    lab = [r["label"] for r in recs]
    text = (from_arrays(full[:40], lab[:40]), from_arrays(bodies[40:70], lab[40:70]),
            from_arrays(bodies[70:], lab[70:]))
    return {"image": image, "text": text}


# Every method must apply to the first setting (a BatchNorm CNN trained end to end); elsewhere a method may refuse.
SETTINGS = {
    "images-end-to-end": ("image", {"backbone": "scratch:cnn", "image_size": 16}),
    "images-frozen": ("image", {"backbone": "scratch:cnn", "image_size": 16, "features": "frozen",
                                "bottleneck_dim": 16}),
    "text-end-to-end": ("text", {"backbone": "scratch:transformer", "max_length": 32}),
}


def _config(method: str, setting: str, **kw) -> AdaptConfig:
    _, options = SETTINGS[setting]
    # from_dict places training settings (epochs, batch_size, ...) wherever AdaptConfig keeps them
    return AdaptConfig.from_dict({"method": method, **options, "epochs": 1, "batch_size": 16, "checkpoints": 2,
                                  "plot_points": 0, "num_threads": 1, "seed": 0, **kw})


@pytest.fixture(scope="module")
def baselines() -> dict:
    return {}  # setting -> the source-only Baseline of its first successful run (same data and settings)


def _weights_equal(a: dict, b: dict) -> bool:
    keys = [k for k in a if "running_" not in k and "num_batches_tracked" not in k]
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", METHODS.names())
def test_adapt_runs_or_refuses_in_one_line(name, setting, domains, baselines, feature_cache):
    modality, _ = SETTINGS[setting]
    source, target, test = domains[modality]
    try:
        r = adapt(_config(name, setting), source, target, test, progress=False, save=False,
                  baseline=baselines.get(setting), cache=feature_cache)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and f"'{name}'" in msg, msg
        assert setting != next(iter(SETTINGS)), f"every method must apply to {setting}: {msg}"
        return
    baselines.setdefault(setting, r.baseline)
    m = r.metrics
    for k in ("adapted", "source_only"):
        assert 0.0 <= m[k]["accuracy"] <= 1.0 and np.isfinite(m[k]["macro_f1"]), m[k]
    assert m["method"] == name and len(r.candidates) >= 1
    assert all(np.isfinite(c["scores"]["dev_risk"]) for c in r.candidates)
    state = {k: v for k, v in r.model.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    comps = build_components(name, MethodContext(r.model.backbone.meta.feature_dim, len(r.labels["classes"])))
    if not _trained(comps):  # source-only or post-hoc only: no weight may be trained beyond source-only's
        assert any(_weights_equal(state, c["state"]) for c in r.baseline.candidates), \
            f"'{name}' trains weights although it has no training loss"
    if not comps:  # no component at all: the adapted model is the source-only one
        assert m["adapted"] == m["source_only"]


@pytest.mark.parametrize("name", METHODS.names())
def test_adapt_without_target_test_reports_no_target_metrics(name, domains, feature_cache):
    source, target, _ = domains["image"]
    try:
        r = adapt(_config(name, "images-frozen"), source, target, None, progress=False, save=False,
                  cache=feature_cache)
    except ConfigError as e:
        assert "\n" not in str(e) and f"'{name}'" in str(e)
        return
    assert "adapted" not in r.metrics and "source_only" not in r.metrics
    assert r.metrics["selection"]["chosen"] is not None


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    from transferkit.features import FeatureCache

    return FeatureCache(tmp_path_factory.mktemp("adapt_features"))


# ---------------------------------------------------------------------------------------------------------
# selection criteria
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("criterion", CRITERIA)
def test_selection_criterion_is_honoured(criterion, domains, feature_cache):
    source, target, test = domains["image"]
    r = adapt(_config("source-only", "images-frozen", select=criterion, checkpoints=3, trade_offs=[0.5, 1.0]),
              source, target, test, progress=False, save=False, cache=feature_cache)
    cands = r.candidates
    i = choose(cands, criterion)
    assert 0 <= i < len(cands)
    chosen = r.metrics["selection"]["chosen"]
    assert chosen == {"trade_off": cands[i]["trade_off"], "step": cands[i]["step"]}
    if criterion == "last":
        assert chosen["step"] == max(c["step"] for c in cands)
    else:
        values = [criterion_score(c["scores"], criterion) for c in cands]
        assert all(np.isfinite(values)) and values[i] == max(values)
    AdaptConfig.from_dict({"method": "source-only", "backbone": "scratch:cnn", "select": criterion}).validate()


def test_unknown_criterion_is_a_one_line_config_error():
    bad = CRITERIA[0][:-1] + "x"
    with pytest.raises(ConfigError, match="Unknown selection criterion") as e:
        AdaptConfig.from_dict({"method": "source-only", "backbone": "scratch:cnn", "select": bad}).validate()
    assert "\n" not in str(e.value) and all(c in str(e.value) for c in CRITERIA)
