"""What a smaller model buys: parameters, weights file size and CPU latency of one forward pass."""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_model
from torch import nn

from ..engine.accelerator import module_device
from ..features.inputs import Inputs


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters of ``model`` (shared tensors once)."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p.numel())
    return int(sum(seen.values()))


def weights_bytes(model: nn.Module) -> int:
    """Size in bytes of ``model`` saved as a run's ``model.safetensors``."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        save_model(model, str(path))
        return path.stat().st_size


@torch.inference_mode()
def cpu_latency(model: nn.Module, inputs: Inputs, batch_sizes: tuple[int, ...] = (1, 32), min_seconds: float = 0.3,
                max_repeats: int = 50) -> dict[str, dict[str, Any]]:
    """Median seconds of one forward pass on CPU at each batch size, on prepared batches of ``inputs`` (images
    decoded and resized, texts tokenised: the model's own time, at the current torch thread count).

    Rows are repeated when ``inputs`` has fewer than the batch size. Returns ``{"b1": {"seconds", "repeats",
    "batch_size"}, ...}``.
    """
    if len(inputs) == 0:
        return {}
    if module_device(model).type != "cpu":
        model = copy.deepcopy(model).cpu()
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, Any]] = {}
    for b in batch_sizes:
        idx = np.resize(np.arange(len(inputs)), b)
        batch = inputs.batch(idx)
        for _ in range(2):  # warm-up (allocations, lazy initialisation)
            model(batch)
        times: list[float] = []
        spent = 0.0
        while len(times) < 3 or (spent < min_seconds and len(times) < max_repeats):
            t0 = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - t0)
            spent += times[-1]
        out[f"b{b}"] = {"batch_size": b, "seconds": statistics.median(times), "repeats": len(times)}
    model.train(was_training)
    return out


def footprint(model: nn.Module, inputs: Inputs, batch_sizes: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    """Parameters, weights bytes and CPU latency of ``model`` (latency on rows of ``inputs``)."""
    return {"parameters": parameter_count(model), "file_bytes": weights_bytes(model),
            "latency": cpu_latency(model, inputs, batch_sizes), "threads": torch.get_num_threads()}


__all__ = ["cpu_latency", "footprint", "parameter_count", "weights_bytes"]
