"""Every error the server sends: a status code, a JSON body ``{"error": "..."}`` and a reason for the metrics."""
from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send


class ApiError(Exception):
    """A request the server refuses: ``status`` (4xx / 503), a one-line ``message`` saying what to send instead,
    ``reason`` (a short label counted in ``/metrics``) and extra headers (``Retry-After``, ...)."""

    def __init__(self, status: int, message: str, reason: str = "invalid",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def send_error(err: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with ``err`` from ASGI middleware (outside FastAPI's exception handlers)."""
    await err.response()(scope, receive, send)
