"""Prometheus metrics of the server (``/metrics``): requests by path and status, latency, batch sizes, rejections.

Each app has its own registry, so several apps in one process (tests) never share counters.
"""
from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATHS = ("/", "/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def path_label(path: str) -> str:
    """A bounded label for a request path: the known routes, ``/static`` or ``other``."""
    if path in PATHS:
        return path
    return "/static" if path.startswith("/static/") else "other"


class ServeMetrics:
    """The server's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("transferkit_serve_requests", "HTTP requests by path and status code",
                                ["path", "status"], registry=r)
        self.latency = Histogram("transferkit_serve_request_seconds", "Time from request to response, by path",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("transferkit_serve_batch_size", "Inputs per model call (micro-batch size)",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("transferkit_serve_batch_seconds", "Model time per micro-batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.rejections = Counter("transferkit_serve_rejections", "Refused requests by reason", ["reason"],
                                  registry=r)
        self.inflight = Gauge("transferkit_serve_inflight_requests", "Prediction requests being handled",
                              registry=r)

    def reject(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every HTTP response by path and status and times it (outermost, so refusals count too)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            label = path_label(scope.get("path", ""))
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)
