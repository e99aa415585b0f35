"""Tiny runs to serve (built once per session): a scratch-CNN image run on digits, a TF-IDF text run and a tiny
BERT text run, plus helpers that talk to an app in-process or to a real server in a subprocess."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.pipeline import fit

TEXTS = ["a great and wonderful film", "awful boring terrible plot", "great acting, good story",
         "bad film, awful ending", "wonderful good fun", "terrible, boring and bad"]
TEXT_LABELS = ["pos", "neg", "pos", "neg", "pos", "neg"]
REPO = Path(__file__).resolve().parents[2]


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(a, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve_runs")


@pytest.fixture(scope="session")
def image_run(serve_runs, digits) -> Path:
    """scratch:cnn linear probe on 120 digits at 16 px."""
    X, y = digits
    cfg = FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[1.0],
                    runs_dir=str(serve_runs), name="digits")
    return fit(cfg, train=from_arrays(X[:120], y[:120]), progress=False).run_dir


@pytest.fixture(scope="session")
def digit_pngs(tmp_path_factory, digits) -> list[Path]:
    """12 held-out digits (not trained on) as PNG files, 8x8 grey scaled to 0..255."""
    X, _ = digits
    d = tmp_path_factory.mktemp("digit_pngs")
    paths = []
    for i in range(12):
        p = d / f"digit{i:02d}.png"
        p.write_bytes(png_bytes(X[300 + i] * (255.0 / 16.0)))
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def text_run(serve_runs) -> Path:
    """classical:tfidf + logistic regression on a few sentiment lines."""
    cfg = FitConfig(backbone="classical:tfidf", strategy="classical", runs_dir=str(serve_runs), name="tfidf")
    return fit(cfg, train=from_arrays(TEXTS * 10, TEXT_LABELS * 10), progress=False).run_dir


@pytest.fixture(scope="session")
def bert_run(serve_runs, tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT (MiniLM's tokenizer) with a linear probe: real padding and attention."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_dir

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(d)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(d)
    cfg = FitConfig(backbone=f"hf:{d}", strategy="linear-probe", max_length=24, probe_grid=[1.0],
                    runs_dir=str(serve_runs), name="bert")
    return fit(cfg, train=from_arrays(TEXTS * 10, TEXT_LABELS * 10), progress=False).run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, every: float = 0.05):
    """Poll ``condition()`` until it returns something truthy (an event we cannot await directly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ServerProcess:
    """``transferkit serve RUN`` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, run: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(run.parent / f"serve-{self.port}.log", "w+", encoding="utf-8")  # noqa: SIM115
        cmd = [sys.executable, "-m", "transferkit.cli.main", "serve", str(run), "--port", str(self.port), *flags]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout, "the server to be ready", every=0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
