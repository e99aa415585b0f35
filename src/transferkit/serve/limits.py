"""Request limits as ASGI middleware, each answering before the endpoint runs: API key (401), requests in
flight (503 with ``Retry-After``) and body size (413, from ``Content-Length`` or from the bytes counted while the
body streams in, so an oversized body is never buffered)."""
from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import ServeMetrics
from .responses import ApiError, send_error

PREDICT_PATH = "/v1/predict"
PROTECTED_PREFIXES = ("/v1/", "/metrics")


class BodyTooLarge(ApiError):
    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f" ({size} bytes)" if size is not None else ""
        super().__init__(413, f"The request body{got} is larger than the server's limit of {limit} bytes "
                              f"(--max-body-mb); send fewer or smaller inputs per request.", reason="too_large")


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: at once when ``Content-Length`` says so, else as soon as the streamed
    bytes pass the limit (the endpoint's read raises :class:`BodyTooLarge`, answered by the app's handler or
    here)."""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: ServeMetrics) -> None:
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            size = int(declared) if declared.strip().isdigit() else None
            if size is None:
                self.metrics.reject("invalid")
                await send_error(ApiError(400, f"Content-Length {declared!r} is not a number of bytes."),
                                 scope, receive, send)
                return
            if size > self.max_bytes:
                self.metrics.reject("too_large")
                await send_error(BodyTooLarge(self.max_bytes, size), scope, receive, send)
                return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except BodyTooLarge as e:
            if started:
                raise
            self.metrics.reject(e.reason)
            await send_error(e, scope, receive, send)


class InflightLimitMiddleware:
    """At most ``limit`` prediction requests at once; the next gets 503 with ``Retry-After`` at once (queueing
    more would only grow every request's latency)."""

    def __init__(self, app: ASGIApp, limit: int, metrics: ServeMetrics, retry_after_s: int = 1) -> None:
        self.app, self.limit, self.metrics, self.retry_after_s = app, limit, metrics, retry_after_s
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.metrics.reject("overloaded")
            err = ApiError(503, f"The server is handling its limit of {self.limit} prediction requests "
                                f"(--max-inflight); retry after {self.retry_after_s} s.", reason="overloaded",
                           headers={"Retry-After": str(self.retry_after_s)})
            await send_error(err, scope, receive, send)
            return
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()


def presented_key(headers: Headers) -> str | None:
    """The key of ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (None when neither is sent)."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


class ApiKeyMiddleware:
    """401 on ``/v1/*`` and ``/metrics`` unless the request carries the key (compared in constant time). The page,
    its static files and the health probes stay open."""

    def __init__(self, app: ASGIApp, key: str, metrics: ServeMetrics, source: str = "the server's API key") -> None:
        self.app, self.key, self.metrics, self.source = app, key.encode(), metrics, source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PROTECTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        given = presented_key(Headers(scope=scope))
        if given is not None and hmac.compare_digest(given.encode(), self.key):
            await self.app(scope, receive, send)
            return
        self.metrics.reject("unauthorized")
        what = "Missing" if given is None else "Wrong"
        err = ApiError(401, f"{what} API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' with "
                            f"{self.source}.", reason="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="transferkit"'})
        await send_error(err, scope, receive, send)
