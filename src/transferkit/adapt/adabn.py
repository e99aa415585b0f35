"""AdaBN: re-estimate BatchNorm statistics on target data, weights unchanged.

Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR-W 2017.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import ConfigError


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def require_batchnorm(model: nn.Module, what: str) -> None:
    """Raise a clear error when there is nothing for AdaBN to re-estimate."""
    if batchnorm_layers(model):
        return
    norms = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})
    has = f"it normalises with {', '.join(norms)} only" if norms else "it has no normalisation layers"
    raise ConfigError(f"Method 'adabn' re-estimates BatchNorm statistics, but {what} has no BatchNorm layer "
                      f"({has}), so it would change nothing. Use coral, mmd, dann, cdan, mcc or self-training.")


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, batches: Iterable) -> int:
    """Replace every BatchNorm layer's running mean/variance by the exact averages over ``batches`` (the
    target data), then leave the model in eval mode. Returns the number of BatchNorm layers updated."""
    layers = batchnorm_layers(model)
    if not layers:
        raise ConfigError("adapt_batchnorm: the model has no BatchNorm layer.")
    model.eval()
    saved = []
    for m in layers:
        saved.append(m.momentum)
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: equal weight to every batch
        m.train()
    for batch in batches:
        model(batch)
    for m, mom in zip(layers, saved):
        m.momentum = mom
    model.eval()
    return len(layers)
