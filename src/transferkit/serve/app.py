"""The FastAPI app of ``transferkit serve``: one run loaded once, micro-batched predictions, limits, metrics, a page.

Routes: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` (alive), ``GET /readyz`` (model warmed up),
``GET /metrics`` (Prometheus text), ``GET /`` (the page) and ``/static/*`` (its files). Nothing loads a model
from a URL and there is no management route. One process serves one copy of the model; each uvicorn / gunicorn
worker would load a copy of its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..runs.store import LoadedRun
from .batcher import BatcherClosed, MicroBatcher
from .config import ServeConfig
from .limits import ApiKeyMiddleware, BodyLimitMiddleware, InflightLimitMiddleware
from .metrics import MetricsMiddleware, ServeMetrics
from .payloads import (
    PredictRequest,
    decode_image,
    parse_json,
    parse_multipart,
    parse_top_k,
)
from .predictor import Predictor
from .responses import ApiError, error_response

log = logging.getLogger("transferkit.serve")
STATIC = Path(__file__).resolve().parent / "static"
DECODE_THREADS = min(4, os.cpu_count() or 1)
INLINE_JSON_BYTES = 256 << 10  # larger JSON bodies are parsed (and their base64 decoded) off the event loop
ROUTES = "POST /v1/predict, GET /v1/model, GET /healthz, GET /readyz, GET /metrics and the page at /"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass
class ServerState:
    """What the routes share: the model, its batcher, the metrics and whether the model is ready."""

    predictor: Predictor
    batcher: MicroBatcher
    metrics: ServeMetrics
    config: ServeConfig
    api_key_source: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None
    decoder: ThreadPoolExecutor | None = None  # a few threads: bounds the memory of images decoded at once

    def limits(self) -> dict[str, Any]:
        c = self.config
        return {"max_batch": c.max_batch, "max_wait_ms": c.max_wait_ms, "max_inflight": c.max_inflight,
                "max_body_bytes": c.max_body_bytes, "max_items": c.max_items, "max_image_pixels": c.max_image_pixels,
                "max_text_chars": c.max_text_chars, "default_top_k": c.top_k}


def create_app(source: str | Path | LoadedRun | Predictor, config: ServeConfig | None = None, *,
               api_key_source: str | None = None) -> FastAPI:
    """The server for one run.

    Args:
        source: a run folder, a loaded run or a :class:`Predictor` (loaded now, so a bad run fails here).
        config: engine, batching and limits (:class:`ServeConfig`).
        api_key_source: where the key comes from, for the 401 message (e.g. "the key in $TK_KEY").

    The model warms up in the model thread after start-up; ``/readyz`` is 503 until it has.
    """
    config = config or ServeConfig()
    predictor = source if isinstance(source, Predictor) else Predictor(source, config.engine, config.max_batch)
    metrics = ServeMetrics()
    batcher = MicroBatcher(predictor.outputs, config.max_batch, config.max_wait_ms, metrics.observe_batch)
    state = ServerState(predictor, batcher, metrics, config, api_key_source)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        state.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="transferkit-decode")
        warm = asyncio.create_task(_warm_up(state))
        try:
            yield
        finally:  # uvicorn has let the in-flight requests finish; run whatever is still queued, then stop
            await batcher.close()
            state.decoder.shutdown(wait=True)
            with contextlib.suppress(asyncio.CancelledError):
                await warm

    app = FastAPI(title="transferkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    _add_handlers(app, metrics)
    _add_routes(app, state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes, metrics=metrics)
    app.add_middleware(InflightLimitMiddleware, limit=config.max_inflight, metrics=metrics)
    if config.api_key:
        app.add_middleware(ApiKeyMiddleware, key=config.api_key, metrics=metrics,
                           source=api_key_source or "the server's API key")
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts refusals too
    return app


async def _warm_up(state: ServerState) -> None:
    try:
        await state.batcher.call(state.predictor.warm_up)
    except Exception as e:  # noqa: BLE001 - reported by /readyz and every prediction, not raised into uvicorn
        state.failure = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        log.error("the model failed to warm up: %s", state.failure)
        return
    state.ready.set()
    log.info("model ready: run %s (%s, engine %s)", state.predictor.run.path.name, state.predictor.modality,
             state.predictor.engine)


def _add_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        metrics.reject(e.reason)
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        metrics.reject("not_found" if e.status_code == 404 else "invalid")
        message = str(e.detail)
        if e.status_code == 404:
            message = f"Nothing at {request.url.path[:200]!r}; the API is {ROUTES}."
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:200]!r}; the API is {ROUTES}."
        return error_response(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        metrics.reject("invalid")
        first = e.errors()[0] if e.errors() else {}
        return error_response(422, f"Invalid request: {first.get('msg', 'malformed')} at "
                                   f"{'.'.join(str(x) for x in first.get('loc', ()))}.")


def _add_routes(app: FastAPI, state: ServerState) -> None:
    predictor, config = state.predictor, state.config

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state.ready.is_set():
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": _not_ready(state).message}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        body, ctype = state.metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        return {**predictor.describe(), "ready": state.ready.is_set(), "limits": state.limits(),
                "auth": bool(config.api_key)}

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict[str, Any]:
        if not state.ready.is_set():
            raise _not_ready(state)
        req = await _read_request(request)
        top_k = req.top_k or parse_top_k(request.query_params.get("top_k")) or config.top_k
        if req.modality != predictor.modality:
            raise ApiError(422, f"Run '{predictor.run.path.name}' takes {predictor.modality}s, not "
                                f"{req.modality}s; send {_what_to_send(predictor.modality)}.", reason="wrong_modality")
        items = req.items
        if predictor.modality == "image":
            items = await asyncio.get_running_loop().run_in_executor(
                state.decoder, _decode_all, items, predictor, config.max_image_pixels)
        try:
            rows = await state.batcher.submit(items)
        except BatcherClosed:
            raise ApiError(503, "The server is shutting down; send the request to another instance.",
                           reason="shutting_down", headers={"Retry-After": "1"}) from None
        except Exception as e:
            log.exception("prediction failed")
            raise ApiError(500, f"Prediction failed ({type(e).__name__}); see the server log.",
                           reason="model_error") from e
        return {"predictions": predictor.format(np.stack(rows), top_k), "run": predictor.run.path.name,
                "engine": predictor.engine}


def _not_ready(state: ServerState) -> ApiError:
    if state.failure:
        return ApiError(503, f"The model could not be set up ({state.failure}); restart the server with "
                             "--engine eager or check the run.", reason="not_ready")
    return ApiError(503, "The model is still warming up; retry in a moment.", reason="not_ready",
                    headers={"Retry-After": "1"})


def _what_to_send(modality: str) -> str:
    if modality == "image":
        return '{"images": ["<base64>"]} or image files as multipart/form-data'
    return '{"texts": ["..."]}'


async def _read_request(request: Request) -> PredictRequest:
    state: ServerState = request.app.state.server
    c = state.config
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await request.body()
        if len(body) <= INLINE_JSON_BYTES:
            return parse_json(body, c.max_items, c.max_text_chars)
        return await run_in_threadpool(parse_json, body, c.max_items, c.max_text_chars)  # keep the loop free
    if ctype == "multipart/form-data":
        return await parse_multipart(request, c.max_items, c.max_text_chars, c.max_body_bytes)
    raise ApiError(415, f"Unsupported Content-Type {ctype or '(none)'!r:.80}; send application/json or "
                        "multipart/form-data.", reason="invalid")


def _decode_all(items: list[bytes], predictor: Predictor, max_pixels: int) -> list[np.ndarray]:
    pre = predictor.image_preprocessor
    return [decode_image(data, f"images[{i}]", pre, max_pixels) for i, data in enumerate(items)]
