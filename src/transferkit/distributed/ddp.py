"""Data-parallel training under torchrun: the environment, the process group, each process's share of a global
batch, gradient all-reduce and BatchNorm statistics over the global batch.

torch only; the engine's :class:`~transferkit.engine.accelerator.Accelerator` is the one caller. Gradients are
averaged at each optimiser step in buckets (what ``DistributedDataParallel``'s reducer computes), so every
objective of the one trainer works unchanged: those that call ``model.backbone`` / ``model.head`` directly
(domain adaptation, contrastive pairs), objectives with their own parameters, unused parameters and gradient
accumulation. ``GlobalBatchNorm`` is ``nn.SyncBatchNorm`` on any device and backend (torch's is GPU-only).
"""
from __future__ import annotations

import atexit
import datetime
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

BUCKET_ELEMENTS = 1 << 23  # 32 MB of fp32 gradients per all-reduce (DDP's default bucket is 25 MB)
TIMEOUT = datetime.timedelta(minutes=60)  # a collective that waits longer fails (gloo's default is 30 min)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_env(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) of this process;
    None outside torchrun or with a single process.

    Raises:
        ConfigError: the variables are set but are not integers with ``0 <= RANK < WORLD_SIZE``.
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise ConfigError(f"The torchrun variables RANK={env['RANK']!r} WORLD_SIZE={env['WORLD_SIZE']!r} must be "
                          "integers; launch with torchrun (or transferkit fit --nproc-per-node N).") from None
    if not 0 <= rank < max(world, 1):
        raise ConfigError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world}); launch with torchrun.")
    return DistEnv(rank, world, local, max(local_world, 1)) if world > 1 else None


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a torchrun job: the process that writes runs and logs."""
    env = distributed_env()
    return env is None or env.is_main


def init_process_group(env: DistEnv, device: torch.device) -> None:
    """Join the job's process group once (NCCL for CUDA, gloo for CPU), from torchrun's ``MASTER_ADDR/PORT``."""
    if dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank,
                            world_size=env.world_size, timeout=TIMEOUT)
    atexit.register(_leave)


def _leave() -> None:
    """Leave the process group before the interpreter exits (gloo can abort in its threads otherwise)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def share_of(item: Any, env: DistEnv) -> tuple[Any, int]:
    """This process's contiguous share of a global batch item, and how many of its rows it counts.

    An item is an index array, a tuple / list of index arrays (``None`` entries pass through), or a dict with
    ``"idx"`` (and ``"n"``). A process whose share would be empty (a global batch with fewer rows than processes)
    gets the batch's first row counted as 0 rows, so that it still takes part in every collective.

    Raises:
        ConfigError: an item of another kind (its batches cannot be split across processes).
    """
    if isinstance(item, dict) and "idx" in item:
        part, n = share_of(item["idx"], env)
        return {**item, "idx": part, "n": n}, n
    if isinstance(item, (tuple, list)):
        parts = [None if x is None else share_of(x, env) for x in item]
        n = next((p[1] for p in parts if p is not None), 0)
        return type(item)(None if p is None else p[0] for p in parts), n
    if isinstance(item, (np.ndarray, torch.Tensor)):
        total = len(item)
        lo, hi = total * env.rank // env.world_size, total * (env.rank + 1) // env.world_size
        if hi > lo:
            return item[lo:hi], hi - lo
        return item[:1], 0
    raise ConfigError(f"Batches of type {type(item).__name__} cannot be split across {env.world_size} processes; "
                      "run this training in one process (without torchrun).")


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Every parameter and buffer of ``module`` set to process ``src``'s values (in place)."""
    for t in module.state_dict().values():
        buf = t if t.is_contiguous() else t.contiguous()
        dist.broadcast(buf, src)
        if buf is not t:
            t.copy_(buf)


def all_reduce_gradients(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Average ``params``' gradients over all processes, in place, in buckets of ``BUCKET_ELEMENTS``.

    A parameter whose gradient is None on one process counts zeros there; one without a gradient on every
    process keeps None (so the optimiser skips it, as it would in one process).
    """
    buckets: dict[tuple[torch.device, torch.dtype], list[list[nn.Parameter]]] = {}
    for p in params:
        rows = buckets.setdefault((p.device, p.dtype), [[]])
        if rows[-1] and sum(q.numel() for q in rows[-1]) + p.numel() > BUCKET_ELEMENTS:
            rows.append([])
        rows[-1].append(p)
    pending = []
    for (device, dtype), rows in buckets.items():
        for ps in rows:
            flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=device,
                                                                                         dtype=dtype) for p in ps]
                             + [torch.tensor([float(p.grad is not None) for p in ps], device=device, dtype=dtype)])
            pending.append((ps, flat, dist.all_reduce(flat, async_op=True)))
    for ps, flat, work in pending:
        work.wait()
        sizes = [p.numel() for p in ps]
        *chunks, has = torch.split(flat, [*sizes, len(ps)])
        for p, g, h in zip(ps, chunks, has.tolist()):
            if h == 0:
                continue
            g = g.view(p.shape).div_(world_size)
            if p.grad is None:
                p.grad = torch.empty_like(p)
            p.grad.copy_(g)


def broadcast_object(obj: Any, device: torch.device, src: int = 0) -> Any:
    """Process ``src``'s ``obj`` on every process: JSON values (tuples arrive as lists) with tensors anywhere
    inside, sent as JSON + safetensors bytes (nothing is pickled)."""
    payload = _encode(obj) if dist.get_rank() == src else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, src)
    buf = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload
           else torch.empty(int(size.item()), dtype=torch.uint8))
    buf = buf.to(device)
    dist.broadcast(buf, src)
    return obj if dist.get_rank() == src else _decode(buf.cpu().numpy().tobytes())


def _encode(obj: Any) -> bytes:
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}

    def skeleton(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = v.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(v, dict):
            return {str(k): skeleton(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [skeleton(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return str(v) if isinstance(v, os.PathLike) else v

    head = json.dumps(skeleton(obj)).encode()
    return len(head).to_bytes(8, "little") + head + (save(tensors) if tensors else b"")


def _decode(data: bytes) -> Any:
    from safetensors.torch import load

    n = int.from_bytes(data[:8], "little")
    tensors = load(data[8 + n:]) if len(data) > 8 + n else {}

    def restore(v: Any) -> Any:
        if isinstance(v, dict):
            return tensors[v["__tensor__"]] if set(v) == {"__tensor__"} else {k: restore(x) for k, x in v.items()}
        if isinstance(v, list):
            return [restore(x) for x in v]
        return v

    return restore(json.loads(data[8:8 + n]))


def all_reduce_values(values: list[float], op: str, device: torch.device) -> list[float]:
    """Element-wise ``sum`` or ``max`` of ``values`` over all processes (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) with a gradient: the backward pass sums the gradients over processes too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (every process's rows), on any device
    and backend; in eval mode, or in a single process, it is plain BatchNorm.

    One differentiable all-reduce per forward (its backward all-reduces the statistics' gradients, as
    ``nn.SyncBatchNorm`` does), of the sums of ``x - running_mean`` and of its squares: shifted by the running
    mean, the one-pass variance stays accurate.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in fp32 at least
        # a copy: the running mean is updated in place below, after the shift is used
        shift = (self.running_mean.detach().to(xf.dtype, copy=True) if self.running_mean is not None
                 else torch.zeros(c, device=x.device, dtype=xf.dtype))
        xs = xf - shift.view(shape)
        n = torch.tensor([xf.numel() // c], device=x.device, dtype=xf.dtype)
        stats = _SumOverProcesses.apply(torch.cat([xs.sum(dims), (xs * xs).sum(dims), n]))
        total = stats[-1]
        m1, m2 = stats[:c] / total, stats[c:2 * c] / total
        var = (m2 - m1 * m1).clamp_min(0)
        y = (xs - m1.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - f).add_((shift + m1.detach()) * f)
                self.running_var.mul_(1 - f).add_(unbiased * f)
        return y.to(x.dtype)


class GlobalBatchNormAct(GlobalBatchNorm):
    """:class:`GlobalBatchNorm` followed by ``drop`` and ``act``: timm's ``BatchNormAct2d`` (EfficientNet, ...)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


_PLAIN_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _global_twin(bn: nn.Module) -> GlobalBatchNorm | None:
    """The global-statistics replacement of a BatchNorm layer (sharing its tensors), or None for other modules."""
    if type(bn) in _PLAIN_BATCHNORMS:
        cls = GlobalBatchNorm
    elif type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "drop") and hasattr(bn, "act"):
        cls = GlobalBatchNormAct
    else:
        return None
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
    for key in ("weight", "bias"):
        setattr(new, key, getattr(bn, key))
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        new.register_buffer(key, getattr(bn, key))
    if cls is GlobalBatchNormAct:
        new.drop, new.act = bn.drop, bn.act
    return new.train(bn.training)


def convert_batchnorm(module: nn.Module) -> int:
    """Replace (in place) every BatchNorm of ``module`` (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``, timm's
    ``BatchNormAct2d``) by a global-statistics twin sharing its parameters and buffers; returns how many. Other
    BatchNorm subclasses are left as they are: their statistics stay per process."""
    count = 0
    for name, child in list(module.named_children()):
        twin = _global_twin(child)
        if twin is not None:
            setattr(module, name, twin)
            count += 1
        else:
            count += convert_batchnorm(child)
    return count
