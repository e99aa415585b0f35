"""``transferkit serve``: answers equal ``predict_dataset``'s, micro-batching batches, every limit has its status
code and JSON error, the API key guards the API, readiness and SIGTERM draining (a real uvicorn subprocess)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import socket
import struct
import threading
import zlib
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import cli, one_line_error
from tests.serve.conftest import ServerProcess, png_bytes, wait_until
from transferkit.data import Dataset
from transferkit.runs import load_run
from transferkit.runs.predict import inputs_to_dataset, predict_dataset
from transferkit.serve import MicroBatcher, Predictor, ServeConfig, create_app

NEW_TEXTS = ["what a great film", "boring and awful", "good fun, wonderful", "terrible", "great great great",
             "a bad, bad ending", "wonderful acting", "awful"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def ready_client(app) -> Iterator[TestClient]:
    """A TestClient (lifespan on) whose app has warmed up."""
    with TestClient(app) as client:
        assert app.state.server.ready.wait(60), app.state.server.failure
        yield client


def samples(metrics_text: str, name: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one metric family in the Prometheus text."""
    out = {}
    for fam in text_string_to_metric_families(metrics_text):
        if fam.name == name:
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def batch_histogram(metrics_text: str) -> tuple[float, float]:
    s = samples(metrics_text, "transferkit_serve_batch_size")
    return s[("transferkit_serve_batch_size_count", ())], s[("transferkit_serve_batch_size_sum", ())]


def rejections(metrics_text: str, reason: str) -> float:
    return samples(metrics_text, "transferkit_serve_rejections").get(
        ("transferkit_serve_rejections_total", (("reason", reason),)), 0.0)


def expected_top(row: dict, k: int) -> tuple[list, list[float]]:
    return [row[f"top{r}_label"] for r in range(1, k + 1)], [row[f"top{r}_probability"] for r in range(1, k + 1)]


def assert_same(got: list[dict], expected: list[dict], k: int) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        labels, probs = expected_top(e, k)
        assert g["label"] == e["label"] and [t["label"] for t in g["top_k"]] == labels
        np.testing.assert_allclose([t["probability"] for t in g["top_k"]], probs, rtol=1e-5, atol=1e-6)


async def with_app(app, fn, wait_ready: bool = True):
    """Run ``fn(client)`` against ``app`` in-process (lifespan on, concurrent requests possible)."""
    async with app.router.lifespan_context(app):
        if wait_ready:
            assert await asyncio.to_thread(app.state.server.ready.wait, 60), app.state.server.failure
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await fn(client)


def png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    data = bytearray(png_bytes(np.zeros((1, 1))))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ---------------------------------------------------------------------------------------------------------------
# answers
# ---------------------------------------------------------------------------------------------------------------
def test_image_predictions_equal_predict_dataset(image_run, digit_pngs):
    run = load_run(image_run)
    expected = predict_dataset(run, inputs_to_dataset(run, [str(p) for p in digit_pngs]), top_k=3)
    assert len({e["label"] for e in expected}) > 2  # a model that tells digits apart
    with ready_client(create_app(image_run, ServeConfig(max_batch=5))) as client:
        r = client.post("/v1/predict", json={"images": [b64(p.read_bytes()) for p in digit_pngs], "top_k": 3})
        assert r.status_code == 200, r.text
        assert_same(r.json()["predictions"], expected, 3)
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in digit_pngs[:3]]
        r = client.post("/v1/predict", files=files, params={"top_k": 2})
        assert r.status_code == 200, r.text
        assert_same(r.json()["predictions"], expected[:3], 2)
        data_url = "data:image/png;base64," + b64(digit_pngs[4].read_bytes())
        assert client.post("/v1/predict", json={"images": [data_url]}).json()["predictions"][0]["label"] == \
            expected[4]["label"]


@pytest.mark.parametrize("which", ["text_run", "bert_run"])
def test_text_predictions_equal_predict_dataset(which, request):
    path = request.getfixturevalue(which)
    expected = predict_dataset(load_run(path), Dataset("text", NEW_TEXTS), top_k=2)
    with ready_client(create_app(path)) as client:
        r = client.post("/v1/predict", json={"texts": NEW_TEXTS, "top_k": 2})
        assert r.status_code == 200, r.text
        assert_same(r.json()["predictions"], expected, 2)
        assert r.json()["run"] == path.name and r.json()["engine"] == "eager"


def test_onnx_engine_answers_like_eager(bert_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_ONNX_CACHE", str(tmp_path / "onnx"))
    expected = predict_dataset(load_run(bert_run), Dataset("text", NEW_TEXTS), top_k=2)
    with ready_client(create_app(bert_run, ServeConfig(engine="onnx"))) as client:
        got = client.post("/v1/predict", json={"texts": NEW_TEXTS, "top_k": 2}).json()["predictions"]
        engine = client.get("/v1/model").json()["engine"]
    assert engine["name"] == "onnx" and engine["ran"] == "onnx" and engine["parity"]["ok"]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    np.testing.assert_allclose([g["probability"] for g in got], [e["probability"] for e in expected], atol=1e-4)


def test_model_endpoint_describes_the_run(image_run):
    import json

    with ready_client(create_app(image_run, ServeConfig(max_items=7))) as client:
        m = client.get("/v1/model").json()
    run = load_run(image_run)
    saved = json.loads((image_run / "metrics.json").read_text())
    assert m["labels"] == list(range(10)) and m["modality"] == "image" and m["task"] == "classification"
    assert m["engine"] == {"name": "eager"} and m["backbone"] == "scratch:cnn" and m["strategy"] == "linear-probe"
    assert m["metrics"]["test"]["accuracy"] == saved["test"]["accuracy"] and "per_class" not in m["metrics"]["test"]
    assert m["lineage"] == run.info["lineage"] and m["input"] == {"image_size": 16}
    assert m["limits"]["max_items"] == 7 and m["ready"] is True and m["auth"] is False


def test_regression_run_returns_values(tmp_path, digits):
    from transferkit.config import FitConfig
    from transferkit.pipeline import fit

    cfg = FitConfig(backbone="classical:tfidf", strategy="classical", task="regression", runs_dir=str(tmp_path),
                    name="reg")
    path = fit(cfg, train=Dataset("text", [f"{w} words" for w in ("one", "two", "three", "four")] * 8,
                                  np.arange(32, dtype=float)), progress=False).run_dir
    expected = predict_dataset(load_run(path), Dataset("text", ["two words", "four words"]))
    with ready_client(create_app(path)) as client:
        got = client.post("/v1/predict", json={"texts": ["two words", "four words"]}).json()["predictions"]
    np.testing.assert_allclose([g["prediction"] for g in got], [e["prediction"] for e in expected], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# micro-batching
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_share_model_calls(bert_run, batching):
    """8 requests at once with max batch 4: two model calls of 4 (the window is long, so only a full batch
    starts one); without batching, 8 calls of 1. Either way the answers are predict_dataset's."""
    config = ServeConfig(max_batch=4, max_wait_ms=10_000)
    app = create_app(bert_run, config if batching else config.without_batching())

    async def go(client):
        rs = await asyncio.gather(*(client.post("/v1/predict", json={"texts": [t], "top_k": 2}) for t in NEW_TEXTS))
        return rs, (await client.get("/metrics")).text

    responses, metrics = asyncio.run(with_app(app, go))
    assert all(r.status_code == 200 for r in responses)
    assert batch_histogram(metrics) == ((2.0, 8.0) if batching else (8.0, 8.0))
    expected = predict_dataset(load_run(bert_run), Dataset("text", NEW_TEXTS), top_k=2)
    assert_same([r.json()["predictions"][0] for r in responses], expected, 2)


def test_batcher_keeps_batches_within_max_and_drains_on_close():
    calls: list[list[int]] = []

    def run_batch(items):
        calls.append(list(items))
        return [i * 10 for i in items]

    async def go():
        b = MicroBatcher(run_batch, max_batch=3, max_wait_ms=10_000)
        b.start()
        jobs = [asyncio.ensure_future(b.submit(items)) for items in ([1], [2, 3], [4], [5, 6, 7, 8], [9])]
        await asyncio.sleep(0)  # every job queued; none can run before the window or a full batch
        await b.close()  # closing: no more waiting; every queued job still runs
        with pytest.raises(RuntimeError, match="shutting down"):
            await b.submit([10])
        return [j.result() for j in jobs]

    results = asyncio.run(go())
    assert results == [[10], [20, 30], [40], [50, 60, 70, 80], [90]]
    assert calls == [[1, 2, 3], [4], [5, 6, 7, 8], [9]]  # a job is never split; one larger than 3 runs alone


def test_batcher_gives_every_waiting_caller_the_model_error():
    def run_batch(items):
        raise RuntimeError("model broke")

    async def go():
        b = MicroBatcher(run_batch, max_batch=4, max_wait_ms=50)
        b.start()
        out = await asyncio.gather(b.submit([1]), b.submit([2]), return_exceptions=True)
        await b.close()
        return out

    assert [str(e) for e in asyncio.run(go())] == ["model broke", "model broke"]


# ---------------------------------------------------------------------------------------------------------------
# readiness, overload
# ---------------------------------------------------------------------------------------------------------------
class GatedPredictor(Predictor):
    """Warm-up and/or model calls wait for ``gate``: the test decides when the model gets to run."""

    def __init__(self, *args, gate_warm_up: bool = False, gate_outputs: bool = False, **kw) -> None:
        super().__init__(*args, **kw)
        self.gate, self.gate_warm_up, self.gate_outputs = threading.Event(), gate_warm_up, gate_outputs

    def warm_up(self) -> None:
        if self.gate_warm_up:
            assert self.gate.wait(30)
        super().warm_up()

    def outputs(self, items):
        if self.gate_outputs:
            assert self.gate.wait(30)
        return super().outputs(items)


def test_readyz_is_503_until_the_model_has_warmed_up(text_run):
    predictor = GatedPredictor(text_run, gate_warm_up=True)
    app = create_app(predictor)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False and "warming up" in r.json()["error"]
        r = client.post("/v1/predict", json={"texts": ["great"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "warming up" in r.json()["error"]
        predictor.gate.set()
        assert app.state.server.ready.wait(30)
        assert client.get("/readyz").json() == {"ready": True}
        assert client.post("/v1/predict", json={"texts": ["great"]}).json()["predictions"][0]["label"] == "pos"


def test_a_failed_warm_up_keeps_the_server_unready(text_run):
    class Broken(Predictor):
        def warm_up(self):
            raise RuntimeError("no engine here")

    with TestClient(create_app(Broken(text_run))) as client:
        wait_until(lambda: client.app.state.server.failure, 10, "the warm-up to fail")
        r = client.get("/readyz")
        assert r.status_code == 503 and "no engine here" in r.json()["error"]
        assert client.post("/v1/predict", json={"texts": ["x"]}).status_code == 503
        assert client.get("/healthz").status_code == 200


def test_a_model_failure_is_a_json_500_and_the_server_stays_up(text_run):
    class Flaky(Predictor):
        def outputs(self, items):
            if "explode" in items:
                raise RuntimeError("model blew up")
            return super().outputs(items)

    with ready_client(create_app(Flaky(text_run))) as client:
        r = client.post("/v1/predict", json={"texts": ["explode"]})
        assert r.status_code == 500 and r.json() == {"error": "Prediction failed (RuntimeError); see the server log."}
        assert client.post("/v1/predict", json={"texts": ["great"]}).status_code == 200
        assert client.get("/readyz").status_code == 200


def test_too_many_requests_in_flight_get_503_with_retry_after(text_run):
    predictor = GatedPredictor(text_run, gate_outputs=True)
    app = create_app(predictor, ServeConfig(max_inflight=2, max_batch=1, max_wait_ms=0))

    async def go(client):
        predictor.gate.set()  # warm-up may pass ...
        assert await asyncio.to_thread(app.state.server.ready.wait, 30)
        predictor.gate.clear()  # ... the requests may not
        held = [asyncio.ensure_future(client.post("/v1/predict", json={"texts": [t]})) for t in ("great", "awful")]

        async def inflight():
            text = (await client.get("/metrics")).text
            return samples(text, "transferkit_serve_inflight_requests")[("transferkit_serve_inflight_requests", ())]

        for _ in range(500):
            if await inflight() == 2:
                break
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/predict", json={"texts": ["good"]})
        health = await client.get("/healthz")  # probes are never refused
        predictor.gate.set()
        return refused, health, await asyncio.gather(*held), (await client.get("/metrics")).text

    refused, health, held, metrics = asyncio.run(with_app(app, go, wait_ready=False))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "--max-inflight" in refused.json()["error"] and health.status_code == 200
    assert [r.json()["predictions"][0]["label"] for r in held] == ["pos", "neg"]
    assert rejections(metrics, "overloaded") == 1.0


# ---------------------------------------------------------------------------------------------------------------
# limits and bad requests
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_client(image_run):
    with ready_client(create_app(image_run, ServeConfig(max_body_mb=0.25, max_items=4,
                                                        max_image_pixels=256 * 256))) as client:
        yield client


@pytest.fixture(scope="module")
def text_client(text_run):
    with ready_client(create_app(text_run, ServeConfig(max_items=4, max_text_chars=1000))) as client:
        yield client


def test_body_over_the_limit_is_413_from_content_length(image_client):
    r = image_client.post("/v1/predict", content=b"x" * (300 << 10), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-body-mb" in r.json()["error"] and str(300 << 10) in r.json()["error"]
    assert rejections(image_client.get("/metrics").text, "too_large") >= 1


def test_streamed_body_over_the_limit_is_413_before_it_is_read(image_run):
    """No Content-Length (chunked): the server stops reading once it has seen more than the limit."""
    pulled = 0

    async def body():
        nonlocal pulled
        for _ in range(800):  # 50 MB in 64 KiB chunks, if it were all read
            pulled += 1
            yield b"x" * (64 << 10)

    app = create_app(image_run, ServeConfig(max_body_mb=1))
    r = asyncio.run(with_app(app, lambda c: c.post("/v1/predict", content=body(),
                                                    headers={"content-type": "application/json"})))
    assert r.status_code == 413 and "1048576 bytes" in r.json()["error"]
    assert pulled <= 20  # 17 chunks pass 1 MiB; the other ~780 were never pulled


@pytest.mark.parametrize("body, message", [
    (b"", "body is empty"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[" * 100_000, "nests too deeply"),
    (b"[1, 2]", "must be an object"),
    (b'{"images": []}', "non-empty list"),
    (b'{"images": "abc"}', "non-empty list"),
    (b'{"images": [1]}', "images[0] must be a string"),
    (b'{"images": ["a", "b", "c", "d", "e"]}', "more than the limit of 4"),
    (b'{"images": ["%%%"]}', "images[0] is not valid base64"),
    (b'{"images": ["aGVsbG8="], "texts": ["x"]}', "exactly one of"),
    (b'{"picture": "x"}', "Unknown field(s) 'picture'"),
    (b'{"images": ["aGVsbG8="], "top_k": 0}', "'top_k' must be an integer"),
    (b'{"images": ["aGVsbG8="], "top_k": true}', "'top_k' must be an integer"),
    (b'{"images": ["aGVsbG8="]}', "images[0] is not an image"),
    (b'{"images": [""]}', "images[0] is empty"),
    (b'{"texts": ["a digit?"]}', "takes images, not texts"),
])
def test_malformed_json_requests_are_422_with_a_message(image_client, body, message):
    r = image_client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and message in r.json()["error"], r.text


def test_bad_images_are_422(image_client, digit_pngs):
    cases = {
        "bomb": (png_declaring(30_000, 30_000), "refused as a decompression bomb"),
        "over the server's limit": (png_declaring(300, 300), "declares 300x300 pixels, more than the server's limit"),
        "truncated": (png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3)))[:300], "cannot be decoded"),
        "not an image": (b"%PDF-1.4 not an image at all", "not an image in a supported format"),
        "EPS is not allowed": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
    }
    for name, (data, message) in cases.items():
        r = image_client.post("/v1/predict", json={"images": [b64(data)]})
        assert r.status_code == 422 and message in r.json()["error"], (name, r.text)
        r = image_client.post("/v1/predict", files={"images": ("x.png", data, "image/png")})
        assert r.status_code == 422 and message in r.json()["error"], (name, r.text)
    good = digit_pngs[0].read_bytes()
    assert image_client.post("/v1/predict", files={"images": ("d.png", good, "image/png")}).status_code == 200


def test_bad_multipart_and_content_types(image_client, digit_pngs):
    r = image_client.post("/v1/predict", content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 422 and "multipart body cannot be read" in r.json()["error"]
    files = [("images", (f"{i}.png", digit_pngs[0].read_bytes(), "image/png")) for i in range(5)]
    r = image_client.post("/v1/predict", files=files)
    assert r.status_code == 422 and "Too many files" in r.json()["error"]
    r = image_client.post("/v1/predict", data={"colour": "red"}, files={"images": ("a.png", b"x", "image/png")})
    assert r.status_code == 422 and "Unknown form field 'colour'" in r.json()["error"]
    for ctype in ("application/x-python-pickle", "text/plain", ""):
        r = image_client.post("/v1/predict", content=b"\x80\x04K\x01.", headers={"content-type": ctype})
        assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_text_limits_and_wrong_modality(text_client):
    r = text_client.post("/v1/predict", json={"texts": ["x" * 1001]})
    assert r.status_code == 422 and "texts[0] has 1001 characters" in r.json()["error"]
    r = text_client.post("/v1/predict", json={"images": [b64(png_bytes(np.zeros((4, 4))))]})
    assert r.status_code == 422 and "takes texts, not images" in r.json()["error"]
    r = text_client.post("/v1/predict", content=b'{"texts": ["\\ud800 lone surrogate", ""]}',
                         headers={"content-type": "application/json"})  # odd but valid JSON text
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    r = text_client.post("/v1/predict", json={"texts": ["great", "x" * 300_000]})  # parsed off the event loop
    assert r.status_code == 422 and "texts[1] has 300000 characters" in r.json()["error"]
    r = text_client.post("/v1/predict", data={"texts": "a great film"})
    assert r.status_code == 415  # a urlencoded form is neither JSON nor multipart
    r = text_client.post("/v1/predict", files={"texts": (None, "a great film"), "top_k": (None, "1")})
    assert r.status_code == 200 and len(r.json()["predictions"][0]["top_k"]) == 1


def test_unknown_routes_methods_and_paths_outside_static(text_client):
    r = text_client.get("/v1/train")
    assert r.status_code == 404 and "POST /v1/predict" in r.json()["error"]
    assert text_client.get("/v1/predict").status_code == 405
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fconfig.py"):
        r = text_client.get(path)
        assert r.status_code == 404 and "ServeConfig" not in r.text, path
    assert text_client.get("/static/app.js").status_code == 200
    page = text_client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    routes = {getattr(r, "path", None) for r in text_client.app.routes}
    assert routes == {"/", "/static", "/healthz", "/readyz", "/metrics", "/v1/model", "/v1/predict"}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                 max_leaves=12).map(lambda v: __import__("json").dumps(v).encode()),
    st.fixed_dictionaries({"images": st.lists(st.one_of(st.binary(max_size=200).map(b64), st.text(max_size=30),
                                                        st.integers()), max_size=5)},
                          optional={"top_k": st.one_of(st.integers(-3, 20), st.text(max_size=3), st.none())})
    .map(lambda v: __import__("json").dumps(v).encode()),
), ctype=st.sampled_from(["application/json", "multipart/form-data; boundary=x", "application/octet-stream"]))
def test_fuzzed_requests_get_only_4xx_and_the_server_stays_ready(image_client, body, ctype):
    r = image_client.post("/v1/predict", content=body, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500 and isinstance(r.json()["error"], str), (r.status_code, r.text)
    assert image_client.get("/readyz").status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# API key
# ---------------------------------------------------------------------------------------------------------------
def test_api_key_guards_the_api_not_the_page_or_probes(text_run):
    with ready_client(create_app(text_run, ServeConfig(api_key="s3cret-key"), api_key_source="the key in $K")) as c:
        body = {"texts": ["great"]}
        r = c.post("/v1/predict", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"].startswith("Missing API key") and "$K" in r.json()["error"]
        r = c.post("/v1/predict", json=body, headers={"Authorization": "Bearer s3cret-kez"})
        assert r.status_code == 401 and r.json()["error"].startswith("Wrong API key")
        assert c.get("/v1/model").status_code == 401 and c.get("/metrics").status_code == 401
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert c.post("/v1/predict", json=body, headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret-key"}).json()["auth"] is True
        for open_path in ("/", "/static/app.js", "/healthz", "/readyz"):
            assert c.get(open_path).status_code == 200, open_path
        metrics = c.get("/metrics", headers={"X-API-Key": "s3cret-key"}).text
        assert rejections(metrics, "unauthorized") == 4.0


# ---------------------------------------------------------------------------------------------------------------
# CLI and a real server
# ---------------------------------------------------------------------------------------------------------------
def test_cli_defaults_and_one_line_errors(text_run, capsys, monkeypatch):
    from transferkit.cli.main import build_parser

    argv = ["serve", str(text_run)]
    args = build_parser(argv).parse_args(argv)
    assert (args.host, args.port, args.max_batch, args.max_wait_ms, args.engine) == ("127.0.0.1", 8000, 32, 5.0, "eager")
    monkeypatch.delenv("TK_UNSET_KEY", raising=False)
    for argv, message in ((["--api-key-env", "TK_UNSET_KEY"], "'TK_UNSET_KEY' (--api-key-env) is not set"),
                          (["--max-batch", "0"], "'max_batch' parameter of ServeConfig must be an integer >= 1"),
                          (["--engine", "onxx"], "Did you mean 'onnx'?"),
                          (["--port", "70000"], "'--port' option must be from 0 to 65535")):
        assert cli("serve", text_run, *argv) == 2
        assert message in one_line_error(capsys.readouterr().err)
    assert cli("serve", text_run.parent / "missing") == 2
    assert "does not exist" in one_line_error(capsys.readouterr().err)


def test_real_server_refuses_big_bodies_unread_and_drains_on_sigterm(text_run):
    """uvicorn in a subprocess: a 50 MB Content-Length gets 413 without a byte of body sent; a request whose batch
    is still waiting when SIGTERM arrives completes with 200, then the server exits 0 and stops listening."""
    server = ServerProcess(text_run, "--max-wait-ms", "1500", "--max-batch", "64", "--max-body-mb", "1")
    try:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 52428800\r\n\r\n")
            reply = s.makefile("rb")
            status = reply.readline().decode("latin-1")
            headers = dict(line.decode("latin-1").strip().lower().split(": ", 1)
                           for line in iter(reply.readline, b"\r\n"))
            body = reply.read(int(headers["content-length"])).decode()
        assert status.startswith("HTTP/1.1 413") and "--max-body-mb" in body

        result: dict[str, httpx.Response] = {}
        slow = threading.Thread(target=lambda: result.update(
            r=httpx.post(f"{server.url}/v1/predict", json={"texts": ["a great film"]}, timeout=30)))
        slow.start()

        def in_flight():
            m = samples(httpx.get(f"{server.url}/metrics", timeout=5).text, "transferkit_serve_inflight_requests")
            return m[("transferkit_serve_inflight_requests", ())] == 1

        wait_until(in_flight, 10, "the request to be in flight")
        server.proc.send_signal(signal.SIGTERM)
        slow.join(30)
        assert result["r"].status_code == 200 and result["r"].json()["predictions"][0]["label"] == "pos"
        assert server.proc.wait(30) == 0, server.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=2)
        assert "Shutting down" in server.output()
    finally:
        server.stop()
