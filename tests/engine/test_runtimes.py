"""Extraction engines: parity with eager PyTorch, cache keys, fall-back and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.data import from_arrays
from transferkit.errors import ConfigError
from transferkit.features.extract import extract_features
from transferkit.features.inputs import Inputs
from transferkit.features.runtimes import ENGINES, Runtime, clear_runtimes, compare_outputs, get_runtime
from transferkit.strategies import FeatureCache

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_ONNX_CACHE", str(tmp_path / "onnx"))
    yield
    clear_runtimes()


@pytest.fixture(scope="module")
def cnn():
    return create_backbone("scratch:cnn", image_size=16, seed=0).eval()


@pytest.fixture(scope="module")
def tiny_text():
    return create_backbone("scratch:transformer", max_length=24, seed=0).eval()


@pytest.fixture(scope="module")
def digit_inputs(cnn, digits150):
    X, y = digits150
    return Inputs(from_arrays(X[:70], y[:70]), cnn)


@pytest.fixture(scope="module")
def text_inputs(tiny_text, spam_records):
    recs = spam_records[:45]  # subjects alone for every other e-mail: batches of different lengths
    texts = [r["subject"] if i % 2 else r["subject"] + "\n" + r["body"] for i, r in enumerate(recs)]
    return Inputs(from_arrays(texts, [r["label"] for r in recs]), tiny_text)


@pytest.mark.parametrize("engine", ["compiled", "onnx", "onnx-int8"])
def test_image_engine_matches_eager(engine, cnn, digit_inputs):
    ref = extract_features(cnn, digit_inputs, 32, progress=False)
    rt = get_runtime(cnn, engine)
    with _maybe_fallback(engine):
        out = extract_features(cnn, digit_inputs, 32, progress=False, engine=rt)
    assert out.shape == ref.shape  # 70 rows: two full batches and a short one (dynamic batch)
    rec = rt.record()
    assert rec["engine"] == engine
    if rec["fallback"] is None:
        assert rec["parity"]["ok"] and rec["parity"]["rows"] == 16
        assert rec["ran"] == engine
    _, cmin, _ = compare_outputs(ref, out)
    assert cmin > (0.98 if engine == "onnx-int8" else 0.9999)
    if engine != "onnx-int8":
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("engine", ["onnx", "onnx-int8"])
def test_text_engine_matches_eager_with_dynamic_length(engine, tiny_text, text_inputs):
    ref = extract_features(tiny_text, text_inputs, 16, progress=False)
    rt = get_runtime(tiny_text, engine)
    out = extract_features(tiny_text, text_inputs, 16, progress=False, engine=rt)
    assert rt.fallback is None, rt.fallback
    assert rt.parity is not None and rt.parity.ok
    lengths = {len(text_inputs.batch(b)["input_ids"][0]) for b in text_inputs.order(16, shuffle=False)}
    assert len(lengths) > 1  # batches of different lengths went through one exported graph
    _, cmin, cmean = compare_outputs(ref, out)
    if engine == "onnx":
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    else:
        assert cmin > 0.95 and cmean > 0.98


def test_onnx_model_is_exported_once_per_weights(cnn, digit_inputs, tmp_path):
    extract_features(cnn, digit_inputs, 32, progress=False, engine="onnx")
    files = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    clear_runtimes()
    rt = get_runtime(cnn, "onnx")
    extract_features(cnn, digit_inputs, 32, progress=False, engine=rt)
    assert sorted((tmp_path / "onnx").glob("*.onnx")) == files and rt.model_path == files[0]
    other = create_backbone("scratch:cnn", image_size=16, seed=1).eval()  # other weights, other file
    extract_features(other, Inputs(digit_inputs.ds, other), 32, progress=False, engine="onnx")
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2


def test_cache_key_names_the_engine(cnn, digit_inputs, tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    keys = {e: cache.key(cnn, digit_inputs, engine=e) for e in ("eager", "compiled", "onnx", "onnx-int8")}
    assert len(set(keys.values())) == 4
    assert keys["eager"] == cache.key(cnn, digit_inputs)  # eager keys unchanged: old caches still hit
    a = cache.get_or_compute(cnn, digit_inputs, 32, progress=False, engine="onnx")
    assert (cache.hits, cache.misses) == (0, 1)
    rec = cache.engine_records[-1]
    assert rec["engine"] == "onnx" and rec["parity"]["ok"] and rec["exporter"] in ("dynamo", "torchscript")
    b = cache.get_or_compute(cnn, digit_inputs, 32, progress=False, engine="onnx")
    assert (cache.hits, cache.misses) == (1, 1) and np.array_equal(a, b)
    cache.get_or_compute(cnn, digit_inputs, 32, progress=False)  # eager: its own entry
    assert cache.misses == 2


def test_unknown_engine_is_a_one_line_config_error(cnn):
    with pytest.raises(ConfigError, match=r"Unknown extraction engine 'onxx'\. Did you mean 'onnx'\?") as e:
        get_runtime(cnn, "onxx")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        FeatureCache(enabled=False).get_or_compute(cnn, None, engine="tensorrt")  # type: ignore[arg-type]
    assert set(ENGINES.names()) == {"eager", "compiled", "onnx", "onnx-int8"}


class _Wrong(Runtime):
    name = "onnx"

    def _run(self, batch):
        return self.eager(batch) + 1.0


class _Broken(Runtime):
    name = "compiled"

    def _setup(self, batch):
        raise RuntimeError("no C++ compiler\nsecond line")


def test_parity_failure_raises_and_setup_failure_falls_back(cnn, digit_inputs):
    with pytest.raises(ConfigError, match="disagrees with eager PyTorch") as e:
        extract_features(cnn, digit_inputs, 32, progress=False, engine=_Wrong(cnn))
    assert "\n" not in str(e.value)
    ref = extract_features(cnn, digit_inputs, 32, progress=False)
    rt = _Broken(cnn)
    with pytest.warns(RuntimeWarning, match="falling back to eager"):
        out = extract_features(cnn, digit_inputs, 32, progress=False, engine=rt)
    assert np.array_equal(out, ref)
    assert rt.record()["ran"] == "eager" and "no C++ compiler" in rt.record()["fallback"]


def test_fit_records_engine_and_parity(digits150, tmp_path):
    from transferkit import FitConfig, fit

    X, y = digits150
    res = fit(FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, engine="onnx", seed=0),
              train=from_arrays(X, y), save=False, progress=False, cache=FeatureCache(tmp_path / "c"))
    recs = res.details["extraction_engine"]
    assert recs and all(r["engine"] == "onnx" and r["ran"] == "onnx" and r["parity"]["ok"] for r in recs)
    assert res.metrics["macro_f1"] > 0.1


def test_runtime_is_memoised_until_weights_change(cnn):
    a = get_runtime(cnn, "onnx")
    assert get_runtime(cnn, "onnx") is a
    with torch.no_grad():
        next(cnn.parameters()).add_(0.0)  # an in-place update (as an optimiser step would do)
    assert get_runtime(cnn, "onnx") is not a


class _maybe_fallback:
    """No warning expected, but a compiler-less machine may fall back (with a warning) for 'compiled'."""

    def __init__(self, engine: str) -> None:
        self.engine = engine

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        if self.engine == "compiled":
            warnings.simplefilter("ignore", RuntimeWarning)
        else:
            warnings.simplefilter("error", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)
