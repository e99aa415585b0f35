"""What identifies a feature set on disk: the cache directory and a backbone's weights hash.

A leaf module (it imports nothing of transferkit), so that the runtimes and the feature cache can both use it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


def default_cache_dir() -> Path:
    env = os.environ.get("TRANSFERKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "transferkit" / "features"


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:24]


__all__ = ["default_cache_dir", "weights_hash"]
