"""Serving a run over HTTP (``transferkit serve``): FastAPI + uvicorn, micro-batching, limits, metrics, a page.

Needs the ``serve`` extra: ``pip install "transferkit[serve]"``.
"""
from .app import create_app
from .batcher import MicroBatcher
from .config import ServeConfig
from .predictor import Predictor

__all__ = ["MicroBatcher", "Predictor", "ServeConfig", "create_app"]
