"""Crash-safe training checkpoints: safetensors for tensors, JSON for the rest, never pickle.

Layout under a checkpoint root (``runs/.NAME.partial/checkpoint``)::

    ckpt-00000120-<id>/     one complete checkpoint (optimiser step 120)
        model.safetensors   optimizer.safetensors   rng.safetensors   [best.safetensors]  [extra.safetensors]
        state.json          position, schedule, callback states, optimiser hyper-parameters, generator states
    latest.json             {"dir": "ckpt-00000120-<id>", "step": 120}

A checkpoint is written into ``ckpt-XXXXXXXX-<id>.tmp``, renamed when complete, and only then does ``latest.json``
(itself written to a temporary file and renamed) point at it. A process killed at any moment leaves either the
previous checkpoint or the new one as ``latest``; stray temporary folders are removed on the next write.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import plain as _plain, write_json_atomic  # noqa: F401  (re-exported)

LATEST = "latest.json"
# Test-only fault injection, comma-separated: "kill-at-step:N" (SIGKILL after optimiser step N),
# "term-at-step:N" (SIGTERM there), "kill-in-checkpoint:N" (SIGKILL half-way through this process's N-th checkpoint).
FAULT_ENV = "TRANSFERKIT_FAULT"
_FAULT_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def fault_point(kind: str, value: int) -> None:
    """Signal this process when ``$TRANSFERKIT_FAULT`` names this point (crash tests; a no-op otherwise).

    ``kind`` is ``"at-step"`` or ``"in-checkpoint"``; the variable's entries add the signal in front of it.
    """
    for item in os.environ.get(FAULT_ENV, "").split(","):
        k, _, v = item.strip().partition(":")
        sig, _, where = k.partition("-")
        if where == kind and sig in _FAULT_SIGNALS and v.strip().isdigit() and int(v) == value:
            os.kill(os.getpid(), _FAULT_SIGNALS[sig])


def _contiguous(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two entries sharing memory (safetensors refuses that): tied weights, such as a
    masked-LM decoder tied to the word embeddings, are stored twice; loading copies both back into the one tensor."""
    out, seen = {}, set()
    for k, v in d.items():
        t = v.detach().contiguous().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[k] = t
    return out


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors, JSON): per-parameter tensors by ``"<index>.<name>"``."""
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{name}"] = v
            else:
                scalars[f"{idx}.{name}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any],
                    ordinal: int = 0) -> Path:
    """Write one checkpoint atomically and point ``latest.json`` at it; older ones are removed.

    ``tensors`` maps a file stem (``model``, ``optimizer``, ...) to a flat name -> tensor dict; ``meta`` goes to
    ``state.json``. ``ordinal`` counts the checkpoints this process wrote (for fault injection only).
    """
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step:08d}-{time.time_ns():x}"  # unique: a second checkpoint at one step never overwrites the first
    tmp = root / f"{name}.tmp"
    tmp.mkdir()
    for i, (stem, d) in enumerate(tensors.items()):
        save_file(_contiguous(d), str(tmp / f"{stem}.safetensors"))
        if i == 0:
            fault_point("in-checkpoint", ordinal)  # half-written: the previous checkpoint must survive this
    write_json_atomic(tmp / "state.json", meta)
    final = root / name
    os.replace(tmp, final)
    write_json_atomic(root / LATEST, {"dir": name, "step": step})
    for p in root.iterdir():
        if p.is_dir() and p.name != name:
            shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    p = root / LATEST
    if not p.exists():
        return None
    try:
        d = root / json.loads(p.read_text(encoding="utf-8"))["dir"]
    except (json.JSONDecodeError, KeyError, OSError):
        return None
    return d if (d / "state.json").exists() else None


def load_checkpoint(directory: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    tensors = {p.stem: load_file(str(p)) for p in sorted(directory.glob("*.safetensors"))}
    meta = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    return tensors, meta


def checkpoint_summary(root: Path) -> dict[str, Any] | None:
    """Where the newest checkpoint under ``root`` (or one level below, for runs with several training phases)
    stands: ``{"step", "epoch", "total", "where"}``; None when there is none."""
    pointers = [p for p in (root / LATEST, *root.glob(f"*/{LATEST}")) if p.exists()]
    found = [(p.stat().st_mtime, p.parent) for p in pointers if latest_checkpoint(p.parent) is not None]
    if not found:
        return None
    _, where = max(found)
    d = latest_checkpoint(where)
    st = json.loads((d / "state.json").read_text(encoding="utf-8"))["state"]
    phase = f"{where.name}, " if where != root else ""
    return {"step": st["step"], "epoch": st["epoch"], "total": st["total_steps"],
            "where": f"{phase}epoch {st['epoch']}, step {st['step']} of {st['total_steps']}"}
