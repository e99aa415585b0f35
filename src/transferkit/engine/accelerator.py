"""The one object that owns device, precision, seeds and threads (after accelerate / Fabric).

Model and objective code never call ``.cuda()`` or ``torch.autocast`` themselves: the trainer asks the
accelerator to move batches, to open the autocast context and to run backward / optimiser steps (with a
gradient scaler for fp16 on CUDA).
"""
from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")


def seed_everything(seed: int) -> None:
    """Python, NumPy (legacy global) and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(n: int | None) -> None:
    torch.set_num_threads(int(n or os.cpu_count() or 1))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device '{device}' was asked for but CUDA is not available here. Use --device cpu or auto.")
    return torch.device(device)


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch (a tensor, or dicts / lists / tuples of them) on ``device``; anything else as it is."""
    if device.type == "cpu" and not (isinstance(batch, torch.Tensor) and batch.device.type != "cpu"):
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def module_device(module: torch.nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@dataclass
class Accelerator:
    """Device, precision (fp32 | bf16 | fp16), seed and thread count for one training run."""

    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    threads: int | None = None
    _device: torch.device = field(init=False, repr=False)
    _scaler: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Unknown precision '{self.precision}'. Choose from: {', '.join(PRECISIONS)}.")
        self._device = resolve_device(self.device)
        if self.precision == "fp16":
            if self._device.type != "cuda":
                raise ConfigError("Precision 'fp16' needs a CUDA device (it uses a gradient scaler); "
                                  "use bf16 on CPU.")
            self._scaler = torch.amp.GradScaler("cuda")

    @property
    def torch_device(self) -> torch.device:
        return self._device

    def setup(self) -> None:
        """Seeds and threads; call once before building what the run trains."""
        seed_everything(self.seed)
        set_threads(self.threads)

    def prepare(self, *modules: torch.nn.Module) -> None:
        for m in modules:
            m.to(self._device)

    def to_device(self, batch: Any) -> Any:
        return move_to(batch, self._device)

    def autocast(self) -> AbstractContextManager:
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self._device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self._scaler.scale(loss) if self._scaler is not None else loss).backward()

    def clip_and_step(self, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                      max_norm: float) -> None:
        if self._scaler is not None:
            self._scaler.unscale_(optimizer)
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        if self._scaler is not None:
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            optimizer.step()

    # -- generator states, so that a resumed run draws the same numbers ------------------------------------
    def rng_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON) describing every global generator; the inverse is :meth:`set_rng_state`."""
        tensors = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"torch_cuda_{i}"] = s
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
        py = random.getstate()
        meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py[0], list(py[1]), py[2]]}
        if self._scaler is not None:
            meta["grad_scaler"] = {k: (float(v) if isinstance(v, (int, float)) else v)
                                   for k, v in self._scaler.state_dict().items()}
        return tensors, meta

    def set_rng_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        torch.set_rng_state(tensors["torch_cpu"])
        cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
        kind, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
        v, state, gauss = meta["python"]
        random.setstate((v, tuple(state), gauss))
        if self._scaler is not None and "grad_scaler" in meta:
            self._scaler.load_state_dict(meta["grad_scaler"])
