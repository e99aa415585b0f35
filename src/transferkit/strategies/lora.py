"""LoRA: low-rank adapters on a frozen backbone, trained with the task head, then merged into the weights
(Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685), through PEFT.

The adapters and the head train on the engine's one trainer (``ctx.fit_model``), selected by its ``trainable``
predicate; every other weight, and every BatchNorm statistic, stays as it was. The run saves the *merged* model
(``merge_and_unload``), the same architecture as a fine-tuned one, so predict / export / serve / ``load_run`` need
no PEFT; the merged model's outputs are checked against the adapted one's before it is returned. The run keeps the
unmerged adapter and head too (``adapter/``, PEFT's file format): with the base backbone they rebuild the model
(:func:`load_unmerged`), so several tasks can share one backbone at a few MB each.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import LoraConfig
from ..engine.accelerator import module_device, move_to
from ..engine.model import TransferModel
from ..errors import ConfigError, DataError, TransferkitError, bad_param, suggest
from ..registry import Registry
from .base import FitContext, StrategyResult

ADAPTER = "default"  # PEFT's adapter name; a parameter of an adapter has ".lora_" in its name
MERGE_TOLERANCE = 1e-4  # fp32: merged and adapted outputs may differ by rounding only (scaled by the outputs' size)
PARITY_ROWS = 64  # validation rows the merged model is checked on
_CAPABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)  # layer types PEFT's LoRA wraps and merges

# -- which layers get adapters -----------------------------------------------------------------------------------
TargetRule = Callable[[nn.Module], list[str]]  # backbone -> names of the modules it picks, in module order
TARGET_RULES: Registry[TargetRule] = Registry("LoRA target rule")

_ATTENTION = re.compile(r"(?:^|\.)(?:query|key|value|q|k|v|o|qkv|[qkvo]_proj|query_proj|key_proj|value_proj|"
                        r"[qkv]_lin|out_lin)$|attention\.output\.dense$|\.attn\.proj$")


def _weights_read_directly(backbone: nn.Module) -> set[str]:
    """Layers whose weights their owner reads without calling them (torch's ``nn.MultiheadAttention`` and its
    ``out_proj``): an adapter wrapped around one would never run."""
    return {f"{n}.{c}" if n else c for n, m in backbone.named_modules() if isinstance(m, nn.MultiheadAttention)
            for c, _ in m.named_children()}


def _mirrors_padding(m: nn.Module) -> bool:
    """An adapter convolution copies the layer's kernel, stride and padding; that equals the layer's own result
    for plain ``nn.Conv*`` and for pointwise stride-1 ones (timm's TF "same"-padding convolutions pad in forward)."""
    if not isinstance(m, (nn.Conv1d, nn.Conv2d)) or type(m).forward in (nn.Conv1d.forward, nn.Conv2d.forward):
        return True
    return all(k == 1 for k in m.kernel_size) and all(s == 1 for s in m.stride)


def capable_layers(backbone: nn.Module) -> list[str]:
    """Names of the backbone's layers an adapter can be put on and merged into (Linear, ungrouped Conv1d/2d,
    Embedding), in module order."""
    skip = _weights_read_directly(backbone)
    return [n for n, m in backbone.named_modules() if n and isinstance(m, _CAPABLE) and n not in skip
            and getattr(m, "groups", 1) == 1 and _mirrors_padding(m)]


@TARGET_RULES.register("attention", "transformers (BERT / MiniLM, ViT): the attention query / key / value and "
                                    "output projections")
def attention_projections(backbone: nn.Module) -> list[str]:
    mods = dict(backbone.named_modules())
    return [n for n in capable_layers(backbone) if isinstance(mods[n], nn.Linear) and _ATTENTION.search(n)]


@TARGET_RULES.register("transformer-ffn", "torch nn.TransformerEncoderLayer (scratch:transformer): the "
                                          "feed-forward linear1 / linear2 (its attention reads weights directly)")
def torch_encoder_ffn(backbone: nn.Module) -> list[str]:
    layers = [n for n, m in backbone.named_modules() if isinstance(m, nn.TransformerEncoderLayer)]
    return [f"{n}.{c}" for n in layers for c in ("linear1", "linear2")]


@TARGET_RULES.register("convolution", "CNNs (EfficientNet-Lite: conv_pw / conv_pwl and the head conv; "
                                      "scratch:cnn): every ungrouped convolution after the stem")
def convolutions_after_stem(backbone: nn.Module) -> list[str]:
    convs = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    capable = set(capable_layers(backbone))
    return [n for n in convs[1:] if n in capable]


def default_targets(backbone: nn.Module) -> tuple[list[str], list[str]]:
    """(module names, rules that picked any) of every registered rule, in module order."""
    picked: set[str] = set()
    used = []
    for name in TARGET_RULES.names():
        hits = TARGET_RULES.get(name)(backbone)
        if hits:
            used.append(name)
            picked.update(hits)
    return [n for n in capable_layers(backbone) if n in picked], used


def _leaves(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in names))


def layer_kinds(names: list[str]) -> list[str]:
    """Module names with their layer numbers as '*' (``encoder.layer.*.attention.self.query``), once each."""
    return list(dict.fromkeys(re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)", "*", n) for n in names))


def resolve_targets(backbone: nn.Module, patterns: str | None, spec: str) -> tuple[list[str], list[str]]:
    """The layers that get adapters: those of the backbone family's rules, or those each comma-separated regex in
    ``patterns`` finds (searched in the dotted module names). Returns (module names, rules or patterns used).

    Raises:
        ConfigError: a pattern finds no adaptable layer (PEFT would silently ignore it), or the rules find none.
    """
    capable = capable_layers(backbone)
    kinds = capable if len(capable) <= 12 else layer_kinds(capable)
    listing = f"Adaptable layers: {', '.join(kinds[:30])}{' ...' if len(kinds) > 30 else ''}"
    if patterns is None:
        names, used = default_targets(backbone)
        if not names:
            rules = ", ".join(TARGET_RULES.names())
            raise ConfigError(f"No default LoRA targets for backbone '{spec}' (rules: {rules}); give --lora-targets. "
                              f"{listing}.")
        return names, used
    chosen: set[str] = set()
    pats = [p.strip() for p in patterns.split(",")]
    for pat in pats:
        hits = [n for n in capable if re.search(pat, n)]
        if not hits:
            raise ConfigError(f"LoRA target pattern '{pat}' matches no adaptable layer of backbone '{spec}'."
                              f"{suggest(pat, _leaves(capable))} {listing} (regexes, searched in these names).")
        chosen.update(hits)
    return [n for n in capable if n in chosen], pats


# -- PEFT ---------------------------------------------------------------------------------------------------------
def _peft() -> Any:
    try:
        return importlib.import_module("peft")
    except ImportError:
        raise ConfigError("Strategy 'lora' needs the 'peft' package. Install it with: "
                          "pip install 'transferkit[lora]'") from None


def add_adapters(backbone: nn.Module, targets: list[str], s: LoraConfig) -> Any:
    """Put LoRA adapters on ``targets`` (module names) of ``backbone``, in place; returns PEFT's ``LoraModel``."""
    peft = _peft()
    cfg = peft.LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                          target_modules=list(targets), bias="none")
    lora = peft.LoraModel(backbone, cfg, ADAPTER)
    if sorted(lora.targeted_module_names) != sorted(targets):  # PEFT matched other layers than asked for
        raise TransferkitError(f"PEFT adapted {len(lora.targeted_module_names)} layers, not the {len(targets)} "
                               "asked for; report this with the backbone spec.")
    return lora


def merge_adapters(lora: Any) -> nn.Module:
    """Fold the adapters into the weights (``merge_and_unload``); returns the plain backbone, no PEFT layers."""
    merged = lora.merge_and_unload(safe_merge=True)
    if "peft_config" in vars(merged):
        del merged.peft_config
    return merged


def is_trainable(name: str, param: nn.Parameter) -> bool:
    """The engine's ``trainable`` predicate for LoRA: adapter weights and the task head."""
    return ".lora_" in name or name.startswith("head.")


@contextmanager
def _attention_fast_path_off() -> Iterator[None]:
    """torch's fused inference path of ``nn.TransformerEncoderLayer`` reads weights directly and would skip the
    adapters during validation; it is off while adapters are in place."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


@torch.inference_mode()
def _outputs(model: TransferModel, batch: Any) -> torch.Tensor:
    model.eval()
    return model(move_to(batch, module_device(model))).float().cpu()


def parameter_counts(model: TransferModel) -> dict[str, Any]:
    """Trainable (adapters + head) and used parameters (the backbone's layer groups and the head, adapters
    included; a timm source classifier is not used) of an adapted model."""
    params = dict(model.named_parameters())
    used = [f"backbone.{n}" for g in model.backbone.layer_groups() for n in g]
    used += [n for n in params if n.startswith("head.")]
    total = sum(params[n].numel() for n in used)
    trainable = sum(params[n].numel() for n in used if is_trainable(n, params[n]))
    adapters = sum(p.numel() for n, p in params.items() if ".lora_" in n)
    return {"trainable_params": trainable, "total_params": total, "trainable_fraction": trainable / max(total, 1),
            "adapter_params": adapters}


def _check_settings(ctx: FitContext) -> None:
    s = ctx.training()
    if s.freeze:
        raise bad_param("strategy lora", "freeze", "0 (adapters go where --lora-targets says: give it a pattern for "
                        "the top layers instead)", s.freeze)
    if s.layer_decay != 1:
        raise bad_param("strategy lora", "layer_decay", "1 (adapters and head train at --lr)", s.layer_decay)


def fit_lora(ctx: FitContext) -> StrategyResult:
    """Adapters on the family's (or ``--lora-targets``') layers + the task head, trained on the engine, merged."""
    s = ctx.config.lora
    _check_settings(ctx)
    targets, used = resolve_targets(ctx.backbone, s.lora_targets, ctx.backbone.meta.spec)
    model = TransferModel(ctx.backbone, ctx.n_out, ctx.config.head)
    with _attention_fast_path_off():
        lora = add_adapters(ctx.backbone, targets, s)
        counts = parameter_counts(model)
        hist = ctx.fit_model(model, desc="lora", trainable=is_trainable)
        probe = ctx.val.batch(np.arange(min(PARITY_ROWS, len(ctx.val))))
        adapted = _outputs(model, probe)
    adapter = unmerged_files(lora, model, ctx.config, ctx.n_out)
    model.backbone = merge_adapters(lora)
    for p in model.parameters():  # a plain model again, as a fine-tuned one
        p.requires_grad_(True)
    merged = _outputs(model, probe)
    diff = float((merged - adapted).abs().max()) if len(adapted) else 0.0
    tol = MERGE_TOLERANCE * max(1.0, float(adapted.abs().max()) if len(adapted) else 1.0)
    if not diff <= tol:
        raise TransferkitError(f"The merged LoRA model differs from the adapted one by {diff:.3g} (tolerance "
                               f"{tol:.3g}) on backbone '{ctx.backbone.meta.spec}'; give --lora-targets other layers.")
    lora_info = {"r": s.lora_r, "alpha": s.lora_alpha, "dropout": s.lora_dropout, "targets": used,
                 "layers": len(targets), "layer_names": layer_kinds(targets), "merge_max_abs_diff": diff,
                 "adapter_head_bytes_fp32": 4 * counts["trainable_params"]}
    return StrategyResult(model, hist, {"best_epoch": hist.best_epoch, "stopped_early": hist.stopped_early,
                                        **counts, "lora": lora_info}, files={ADAPTER_DIR: adapter})


# -- the unmerged adapter -------------------------------------------------------------------------------------------
ADAPTER_DIR = "adapter"  # in the run: PEFT's adapter_config.json + adapter_model.safetensors, head.safetensors


def unmerged_files(lora: Any, model: TransferModel, config: Any, n_out: int) -> Callable[[Path], None]:
    """A writer of the trained adapter before it is merged: ``adapter_config.json`` and ``adapter_model.safetensors``
    (PEFT's format and key names), the task head (``head.safetensors``) and ``adapter.json`` (base backbone, head).
    With the base backbone's weights these rebuild the model (:func:`load_unmerged`): one backbone for several
    tasks, a few MB per task."""
    from safetensors.torch import save_file

    peft = _peft()
    state = {k: v.detach().cpu().clone().contiguous()
             for k, v in peft.get_peft_model_state_dict(lora, adapter_name=ADAPTER).items()}
    lora_config = lora.peft_config[ADAPTER]
    info = {"base_backbone": config.backbone, "image_size": config.image_size, "max_length": config.max_length,
            "pooling": config.pooling, "head": config.head, "n_out": n_out, "peft": peft.__version__}

    def write(d: Path) -> None:
        from ..atomic import write_json_atomic

        # the head and the regression target scaling as they are when the run is written (set after the fit)
        head = {f"head.{k}": v for k, v in model.head.state_dict().items()}
        head.update({k: getattr(model, k) for k in ("target_mean", "target_std") if hasattr(model, k)})
        d.mkdir(parents=True, exist_ok=True)
        save_file(state, str(d / "adapter_model.safetensors"))
        lora_config.save_pretrained(str(d))
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in head.items()}, str(d / "head.safetensors"))
        write_json_atomic(d / "adapter.json", info)

    return write


def load_unmerged(run_dir: str | Path) -> TransferModel:
    """The model of a LoRA run rebuilt *unmerged*: its base backbone (pretrained weights, as at fit time) with the
    run's adapter and head, PEFT layers in place (outputs equal the merged model's to rounding). Needs PEFT.

    Raises:
        ConfigError: the run has no adapter (not a LoRA run, or fitted before adapters were kept).
        DataError: an adapter file is missing or unreadable.
    """
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..backbones import create_backbone

    d = Path(run_dir) / ADAPTER_DIR
    if not (d / "adapter.json").is_file():
        raise ConfigError(f"Run '{run_dir}' has no unmerged adapter ('{ADAPTER_DIR}/adapter.json'): only runs of "
                          "strategy lora keep one. Load it with load_run instead.")
    peft = _peft()
    try:
        info = json.loads((d / "adapter.json").read_text(encoding="utf-8"))
        cfg = peft.LoraConfig.from_pretrained(str(d))
        state = load_file(str(d / "adapter_model.safetensors"))
        rest = load_file(str(d / "head.safetensors"))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"The adapter in '{d}' cannot be read ({why}); restore the run folder from a backup or fit "
                        "it again.") from None
    backbone = create_backbone(info["base_backbone"], pretrained=True, image_size=info["image_size"],
                               max_length=info["max_length"], pooling=info["pooling"])
    lora = peft.LoraModel(backbone, cfg, ADAPTER)
    result = peft.set_peft_model_state_dict(lora, state, adapter_name=ADAPTER)
    unused = [k for k in getattr(result, "unexpected_keys", []) if ".lora_" in k]
    if unused:
        raise TransferkitError(f"The adapter of run '{run_dir}' does not fit its base backbone "
                               f"'{info['base_backbone']}' ({unused[0]} unused).")
    model = TransferModel(backbone, info["n_out"], info["head"])
    model.head.load_state_dict({k[len("head."):]: v for k, v in rest.items() if k.startswith("head.")})
    for k in ("target_mean", "target_std"):
        if k in rest:
            getattr(model, k).copy_(rest[k])
    return model.eval()
