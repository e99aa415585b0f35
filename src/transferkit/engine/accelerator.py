"""The one object that owns device, precision, seeds, threads and distribution (after accelerate / Fabric).

Model and objective code never call ``.cuda()`` or ``torch.autocast`` themselves: the trainer asks the
accelerator to move batches, to open the autocast context and to run backward / optimiser steps (with a
gradient scaler for fp16 on CUDA).

Under torchrun (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set, more than one process) the accelerator joins the
process group (gloo on CPU, NCCL on CUDA, one GPU per local rank), gives each process its contiguous share of
every global batch, averages gradients at each optimiser step and makes BatchNorm use global-batch statistics
(:mod:`transferkit.distributed.ddp`), so that N processes train what one process would at the same global batch.
Rank 0 alone validates (the result is broadcast) and writes checkpoints.
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..distributed import ddp
from ..errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")


def seed_everything(seed: int) -> None:
    """Python, NumPy (legacy global) and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(n: int | None) -> None:
    """``n`` torch threads; by default the cores shared among this machine's torchrun processes (all in one)."""
    env = ddp.distributed_env()
    torch.set_num_threads(int(n or max(1, (os.cpu_count() or 1) // (env.local_world_size if env else 1))))


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """``device`` as a torch device; "auto" / "cuda" under torchrun is the local rank's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device '{device}' was asked for but CUDA is not available here. Use --device cpu or auto.")
    if device == "cuda" and local_rank is not None:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"Process LOCAL_RANK={local_rank} has no GPU of its own ({torch.cuda.device_count()} "
                              "visible): start at most one process per GPU, or use --device cpu.")
        return torch.device("cuda", local_rank)
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
    """Device, precision (fp32 | bf16 | fp16), seed, thread count and (under torchrun) the process group for one
    training run."""

    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    threads: int | None = None
    _device: torch.device = field(init=False, repr=False)
    _scaler: Any = field(init=False, repr=False, default=None)
    _dist: ddp.DistEnv | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Unknown precision '{self.precision}'. Choose from: {', '.join(PRECISIONS)}.")
        self._dist = ddp.distributed_env()
        self._device = resolve_device(self.device, self._dist.local_rank if self._dist else None)
        if self._dist is not None:
            ddp.init_process_group(self._dist, self._device)
        if self.precision == "fp16":
            if self._device.type != "cuda":
                raise ConfigError("Precision 'fp16' needs a CUDA device (it uses a gradient scaler); "
                                  "use bf16 on CPU.")
            self._scaler = torch.amp.GradScaler("cuda")

    @property
    def torch_device(self) -> torch.device:
        return self._device

    @property
    def is_main(self) -> bool:
        """The process that validates and writes (rank 0; the only one outside torchrun)."""
        return self._dist is None or self._dist.is_main

    @property
    def world_size(self) -> int:
        return self._dist.world_size if self._dist else 1

    def setup(self) -> None:
        """Seeds and threads; call once before building what the run trains."""
        seed_everything(self.seed)
        set_threads(self.threads)

    def prepare(self, *modules: torch.nn.Module) -> None:
        """On the device; under torchrun with global-batch BatchNorm and rank 0's weights on every process."""
        for m in modules:
            m.to(self._device)
            if self._dist is not None:
                ddp.convert_batchnorm(m)
                ddp.broadcast_module(m)

    # -- the global batch: each process trains on its share ------------------------------------------------
    def shard(self, item: Any, n: int) -> tuple[Any, int]:
        """This process's share of a global batch item of ``n`` rows, and the rows it counts (all in one process)."""
        if self._dist is None:
            return item, n
        return ddp.share_of(item, self._dist)

    def share(self, n: int, n_global: int) -> float:
        """The loss weight of a process's ``n`` rows out of ``n_global``: gradients averaged over processes then
        equal the gradient of the global batch's mean loss (1 in one process)."""
        return self.world_size * n / max(n_global, 1) if self._dist is not None else 1.0

    def sum_over_processes(self, value: float) -> float:
        return value if self._dist is None else ddp.all_reduce_values([value], "sum", self._device)[0]

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed by rank 0 alone and broadcast, so that every process decides alike (JSON values and
        tensors: see :func:`~transferkit.distributed.ddp.broadcast_object`)."""
        if self._dist is None:
            return fn()
        value = None
        if self._dist.is_main:
            try:
                value = ("ok", fn())
            except BaseException as e:
                ddp.broadcast_object(("error", f"{type(e).__name__}: {e}"), self._device)  # the others stop too
                raise
        kind, out = ddp.broadcast_object(value, self._device)
        if kind == "error":
            raise RuntimeError(f"Rank 0 failed ({out}); this process stops with it.")
        return out

    def agree(self, interrupted: str | None, should_stop: bool) -> tuple[str | None, bool]:
        """Whether any process was interrupted (a signal) or asked to stop: then all stop together."""
        if self._dist is None:
            return interrupted, should_stop
        anyone, stop = ddp.all_reduce_values([float(interrupted is not None), float(should_stop)], "max",
                                            self._device)
        if anyone and interrupted is None:
            interrupted = "stopped (another process was interrupted)"
        return interrupted, bool(stop)

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
        if self._dist is not None:
            ddp.all_reduce_gradients(params, self.world_size)
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
