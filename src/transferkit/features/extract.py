"""Frozen feature extraction under inference mode, with progress."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbones.base import Backbone
from .inputs import Inputs
from .runtimes import Runtime, get_runtime


@torch.inference_mode()
def extract_features(backbone: Backbone, inputs: Inputs, batch_size: int = 64, desc: str = "features",
                     source_logits: bool = False, progress: bool = True,
                     engine: str | Runtime = "eager") -> np.ndarray:
    """Features [N, D] (or source-head logits) in dataset order, computed by ``engine`` (see ``runtimes``)."""
    backbone.eval()
    run = engine if isinstance(engine, Runtime) else get_runtime(backbone, engine, source_logits)
    n = len(inputs)
    out: np.ndarray | None = None
    with tqdm(total=n, desc=desc, unit="ex", disable=not progress, leave=False) as bar:
        for idx in inputs.order(batch_size, shuffle=False):
            f = run(run.prepare(inputs, idx))
            f = f.float().numpy()
            if out is None:
                out = np.empty((n, f.shape[1]), dtype=np.float32)
            out[idx] = f
            bar.update(len(idx))
    return out if out is not None else np.empty((0, backbone.meta.feature_dim), dtype=np.float32)
