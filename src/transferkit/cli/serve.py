"""``transferkit serve``: serve a saved run over HTTP (a prediction API, metrics and a web page)."""
from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator

COMMAND = "serve"
HELP = "serve a saved run over HTTP: prediction API, metrics and a web page"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(COMMAND, help=HELP, description=(
        "Load RUN once and serve POST /v1/predict, GET /v1/model, /healthz, /readyz, /metrics and a page at /. "
        "One process holds one copy of the model (every extra worker process would load its own)."))
    p.add_argument("run", help="a run folder written by `transferkit fit`")
    p.add_argument("--engine", default="eager", help="backbone engine: eager | compiled | onnx | onnx-int8")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="most inputs per model call (micro-batch)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    p.add_argument("--no-batching", action="store_true", help="one request per model call (for comparisons)")
    p.add_argument("--max-inflight", type=int, default=64, help="prediction requests at once; more get 503")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="largest request body; larger get 413")
    p.add_argument("--max-items", type=int, default=64, help="most texts or images per request")
    p.add_argument("--max-image-pixels", type=int, default=4096 * 4096, help="most pixels an image may declare")
    p.add_argument("--max-text-chars", type=int, default=100_000, help="longest text accepted")
    p.add_argument("--api-key-env", metavar="VAR", help="require the API key held in environment variable VAR")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds SIGTERM waits for in-flight requests before stopping (default 30)")


def _api_key(var: str | None) -> str | None:
    import os

    from ..errors import ConfigError

    if var is None:
        return None
    key = os.environ.get(var, "")
    if not key.strip():
        raise ConfigError(f"Environment variable '{var}' (--api-key-env) is not set or empty; put the API key in "
                          f"it first, e.g. export {var}=$(openssl rand -hex 16).")
    return key.strip()


@contextlib.contextmanager
def _stop_signals_end_cleanly() -> Iterator[list[int]]:
    """uvicorn drains on SIGTERM / SIGINT, then raises the signal again once it has stopped; answered here, a
    graceful stop exits 0 (instead of dying of the signal)."""
    seen: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda sig, frame: seen.append(sig)) for s in stops}
    try:
        yield seen
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import ConfigError

    try:
        import uvicorn

        from ..serve import ServeConfig, create_app
    except ImportError as e:
        raise ConfigError(f"`transferkit serve` needs FastAPI and uvicorn ({e}); install them with "
                          "pip install 'transferkit[serve]'.") from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"The '--port' option must be from 0 to 65535. Got {args.port} instead.")
    config = ServeConfig(engine=args.engine, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                         max_inflight=args.max_inflight, max_body_mb=args.max_body_mb, max_items=args.max_items,
                         max_image_pixels=args.max_image_pixels, max_text_chars=args.max_text_chars,
                         api_key=_api_key(args.api_key_env))
    if args.no_batching:
        config = config.without_batching()
    app = create_app(args.run, config, api_key_source=f"the key in ${args.api_key_env}" if args.api_key_env else None)
    predictor = app.state.server.predictor
    if args.host not in LOOPBACK and not config.api_key:
        print(f"transferkit: warning: listening on {args.host} without an API key: anyone who can reach this "
              "port can use the model. Add --api-key-env VAR.", file=sys.stderr)
    print(f"serving run '{predictor.run.path.name}' ({predictor.modality}, engine {config.engine}, "
          f"max batch {config.max_batch}) on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    try:
        with _stop_signals_end_cleanly() as seen:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                        timeout_graceful_shutdown=args.drain_timeout)
        if seen:
            print(f"transferkit: stopped by {signal.Signals(seen[0]).name} after finishing the requests in flight.",
                  file=sys.stderr)
    except SystemExit as e:  # uvicorn exits 1 when it cannot start (port taken, ...), after logging why
        if e.code:
            raise ConfigError(f"The server could not start on {args.host}:{args.port} (see the message above); "
                              "choose another --port or --host.") from None
    return 0
