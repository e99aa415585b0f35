"""Settings of ``transferkit serve``: the engine, micro-batching and the request limits, validated once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import bad_param

MB = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches and what it accepts.

    Args:
        engine: the backbone's extraction engine (``eager``, ``compiled``, ``onnx``, ``onnx-int8``).
        max_batch: most inputs per model call; requests arriving together share one call.
        max_wait_ms: how long the first request of a batch waits for others to join it.
        max_inflight: prediction requests handled at once; more are refused with 503 and ``Retry-After``.
        max_body_mb: largest request body; larger ones get 413 before they are read.
        max_items: most texts or images in one request (422 above it).
        max_image_pixels: most pixels an uploaded image may declare in its header (422 above it).
        max_text_chars: longest text accepted (422 above it).
        top_k: labels returned per input when the request does not say.
        api_key: when set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
    """

    engine: str = "eager"
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_inflight: int = 64
    max_body_mb: float = 10.0
    max_items: int = 64
    max_image_pixels: int = 4096 * 4096
    max_text_chars: int = 100_000
    top_k: int = 3
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from ..features.runtimes import ENGINES

        ENGINES.get(self.engine)  # unknown names raise with a suggestion
        positive_ints = ("max_batch", "max_inflight", "max_items", "max_image_pixels", "max_text_chars", "top_k")
        for name in positive_ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad_param("ServeConfig", name, "an integer >= 1", v)
        if isinstance(self.max_wait_ms, bool) or not isinstance(self.max_wait_ms, (int, float)) \
                or not 0 <= self.max_wait_ms <= 10_000:
            raise bad_param("ServeConfig", "max_wait_ms", "a number of milliseconds in [0, 10000]", self.max_wait_ms)
        if isinstance(self.max_body_mb, bool) or not isinstance(self.max_body_mb, (int, float)) \
                or not 0 < self.max_body_mb <= 1024:
            raise bad_param("ServeConfig", "max_body_mb", "a number of megabytes in (0, 1024]", self.max_body_mb)
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise bad_param("ServeConfig", "api_key", "a non-empty string or None", "<hidden>")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    def without_batching(self) -> ServeConfig:
        """The same settings with one request per model call (for comparisons)."""
        return dataclasses.replace(self, max_batch=1, max_wait_ms=0.0)
