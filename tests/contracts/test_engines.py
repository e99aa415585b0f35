"""Contract tests over every registered extraction engine (``transferkit.features.ENGINES``).

For each engine, on a small real image set (32 scikit-learn digits through ``scratch:cnn`` at 16 px, two batches
of 16), the features agree with eager PyTorch within the tolerance the engine itself declares (``max_rel_diff``
of ``max(1, max |eager|)``, ``min_cosine``, ``min_mean_cosine``) on *every* row, not only on the rows of the first
batch that the engine checks itself; and ``record()`` names the engine and reports its own parity check as passed.

ONNX engines are skipped only when ONNX Runtime is not importable. An engine that falls back to eager (``compiled``
without a C++ compiler) must warn, say so in its record and return eager's features exactly; an ONNX engine must
not fall back where ONNX Runtime is installed.

The batches are all the same size: a short last batch makes ``compiled`` recompile (about 30 s more on a cold
inductor cache, 2 CPU cores); dynamic batch sizes are covered in ``tests/engine/test_runtimes.py``.
"""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from transferkit.backbones import create_backbone
from transferkit.data import from_arrays
from transferkit.features import ENGINES, Inputs, extract_features
from transferkit.features.runtimes import Runtime, clear_runtimes, compare_outputs, engine_identity, get_runtime

BATCH = 16


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_ONNX_CACHE", str(tmp_path / "onnx"))
    yield
    clear_runtimes()


@pytest.fixture(scope="module")
def images(digits):
    X, y = digits
    return from_arrays(X[:32], y[:32], value_max=16)


@pytest.fixture(scope="module")
def cnn():
    return create_backbone("scratch:cnn", image_size=16, seed=0).eval()


def _needs(engine: str) -> None:
    ident = engine_identity(engine)
    if "onnxruntime" in ident and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip(f"engine '{engine}' runs on ONNX Runtime, which is not installed (pip install onnxruntime)")


def _within_declared_tolerance(cls: type[Runtime], ref: np.ndarray, out: np.ndarray) -> None:
    assert out.shape == ref.shape and np.isfinite(out).all()
    diff, cmin, cmean = compare_outputs(ref, out)
    scale = max(1.0, float(np.abs(ref).max()))
    assert diff <= cls.max_rel_diff * scale, (cls.name, diff, cls.max_rel_diff * scale)
    assert cmin >= cls.min_cosine and cmean >= cls.min_mean_cosine, (cls.name, cmin, cmean)


def _run(backbone, images, engine: str):
    ref = extract_features(backbone, Inputs(images, backbone), BATCH, progress=False)
    rt = get_runtime(backbone, engine)
    assert isinstance(rt, ENGINES.get(engine))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = extract_features(backbone, Inputs(images, backbone), BATCH, progress=False, engine=rt)
    rec = rt.record()
    assert rec["engine"] == rt.name == engine
    if rt.fallback is not None:  # could not set up here: it must say so and behave exactly like eager
        assert any(issubclass(w.category, RuntimeWarning) and "falling back to eager" in str(w.message)
                   for w in caught), [str(w.message) for w in caught]
        assert rec["ran"] == "eager" and rec["fallback"]
        np.testing.assert_array_equal(out, ref)
        ident = engine_identity(engine)
        if ident.get("onnxruntime"):
            pytest.fail(f"engine '{engine}' fell back to eager although ONNX Runtime is installed: {rt.fallback}")
        pytest.skip(f"engine '{engine}' cannot run on this machine and fell back to eager: {rt.fallback}")
    assert rec["ran"] == engine
    if ENGINES.get(engine) is not Runtime:  # every engine but the eager reference checks itself
        assert rec["parity"] is not None and rec["parity"]["ok"] and rec["parity"]["rows"] >= 1
    return ref, out


@pytest.mark.parametrize("engine", ENGINES.names())
def test_features_agree_with_eager_within_declared_tolerance(engine, cnn, images):
    _needs(engine)
    ref, out = _run(cnn, images, engine)
    assert out.shape == (len(images), cnn.meta.feature_dim)
    _within_declared_tolerance(ENGINES.get(engine), ref, out)


@pytest.mark.parametrize("engine", ENGINES.names())
def test_declared_tolerance_is_sane(engine):
    cls = ENGINES.get(engine)
    assert issubclass(cls, Runtime) and cls.name == engine
    assert cls.max_rel_diff > 0 and 0 < cls.min_cosine <= cls.min_mean_cosine <= 1
    assert cls.parity_rows >= 1
    ident = engine_identity(engine)
    assert ident["engine"] == engine and ident["torch"]
