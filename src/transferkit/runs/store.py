"""The run directory: written atomically (a partial dir renamed into place), loaded safely (safetensors)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..backbones import create_backbone
from ..backbones.base import Backbone
from ..baselines.tfidf import load_vocabularies, read_vocabulary, save_vocabularies
from ..config import FitConfig
from ..data.labels import LabelMap
from ..engine.model import TransferModel
from ..errors import ConfigError, DataError, TransferkitError
from .integrity import read_run_json, verify

RUN_MARKER = "run.json"
PRETRAIN_KIND = "pretrain"  # run.json "kind" of a pretraining run: an encoder (ENCODER_DIR, HF format), no classifier
ENCODER_DIR = "encoder"


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def environment() -> dict[str, str]:
    import sklearn
    import timm
    import transformers

    from .._version import __version__

    return {"transferkit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "transformers": transformers.__version__, "sklearn": sklearn.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "threads": str(torch.get_num_threads()),
            "processes": str(_processes())}


def _processes() -> int:
    """How many processes trained the run (torchrun's world size; 1 outside torchrun)."""
    from ..distributed.ddp import distributed_env

    env = distributed_env()
    return 1 if env is None else env.world_size


def save_model_files(directory: Path, model: TransferModel, config: FitConfig, labels: dict[str, Any]) -> None:
    save_model(model, str(directory / "model.safetensors"))
    save_vocabularies(model, directory)  # vocabularies of its TF-IDF parts (classical:tfidf, lexical branch)
    (directory / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    meta = model.backbone.meta.to_dict()
    meta["preprocessing"] = model.backbone.describe_preprocessing()
    write_json(directory / "backbone.json", meta)
    write_json(directory / "labels.json", labels)
    if hasattr(model.backbone, "save_files"):
        model.backbone.save_files(directory / "backbone_files")


@dataclass
class LoadedRun:
    path: Path
    config: FitConfig
    model: TransferModel
    labels: dict[str, Any]
    info: dict[str, Any]

    @property
    def label_map(self) -> LabelMap | None:
        return LabelMap.from_dict(self.labels) if "classes" in self.labels else None

    @property
    def modality(self) -> str:
        return self.model.backbone.meta.modality


def rebuild_backbone(path: Path, config: FitConfig, meta: dict[str, Any]) -> Backbone:
    """The backbone architecture of a saved run, without downloading anything."""
    files = path / "backbone_files"
    if files.exists():
        from .. import backbones as bb  # noqa: F401
        from ..backbones.hf import create_hf

        b = create_hf(str(files), pretrained=False, image_size=meta.get("input_size"),
                      max_length=meta.get("max_length"), pooling=meta.get("extra", {}).get("pooling", "mean"))
        b.meta = dataclasses.replace(b.meta, spec=meta["spec"])
        return b
    spec = meta.get("extra", {}).get("rebuild_spec", meta["spec"])
    b = create_backbone(spec, pretrained=False, image_size=meta.get("input_size"), max_length=meta.get("max_length"),
                        pooling=meta.get("extra", {}).get("pooling"),
                        **meta.get("extra", {}).get("rebuild_options", {}))  # e.g. a classical:tfidf vocabulary size
    if spec != meta["spec"]:  # a run:PATH backbone: same architecture, no need for the parent run to exist
        b.meta = dataclasses.replace(b.meta, spec=meta["spec"], source=meta.get("source", b.meta.source),
                                     extra={**b.meta.extra, "rebuild_spec": spec})
    return b


def read_info(path: str | Path) -> dict[str, Any] | None:
    """A run directory's ``run.json`` (None when there is none or it is unreadable)."""
    p = Path(path) / RUN_MARKER
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def is_pretrain_run(path: str | Path) -> bool:
    info = read_info(path)
    return isinstance(info, dict) and info.get("kind") == PRETRAIN_KIND


def _damaged(p: Path, what: str) -> DataError:
    return DataError(f"Run file '{p}' is damaged ({what}). Restore the run folder from a backup or fit again.")


def read_run_file(p: Path) -> Any:
    """One JSON file of a run, or a one-line error naming it."""
    if not p.is_file():
        raise DataError(f"Run file '{p}' is missing; the run folder is incomplete. Restore it from a backup or "
                        "fit again.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(p, f"not valid JSON: {e}") from None


def _load_weights(model: TransferModel, p: Path) -> None:
    try:
        load_model(model, str(p), strict=True)
    except SafetensorError as e:
        raise _damaged(p, f"not a readable safetensors file: {e}") from None
    except RuntimeError as e:  # tensors of other names or shapes than the run's architecture
        raise _damaged(p, f"its tensors do not fit the run's model: {str(e).splitlines()[0][:200]}") from None


def _rebuild_model(p: Path, config: FitConfig, meta: dict[str, Any], labels: dict[str, Any],
                   info: dict[str, Any]) -> TransferModel:
    """The run's architecture (no weights yet) from its JSON/YAML files."""
    backbone = rebuild_backbone(p, config, meta)
    n_out = len(labels["classes"]) if "classes" in labels else 1
    model = TransferModel(backbone, n_out, info.get("head", config.head))
    lexical = read_vocabulary(p, "lexical")  # a hybrid run's TF-IDF branch
    if lexical is not None:
        from ..engine.lexical import LexicalBranch

        model.lexical = LexicalBranch(len(lexical), n_out)
    load_vocabularies(model, p)
    return model


def load_run(path: str | Path) -> LoadedRun:
    """Load a complete run directory after checking its files against ``run.json``'s SHA-256 manifest (refuses
    partial and damaged ones, and pretraining runs: they hold no classifier). Nothing is unpickled."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"Run '{p}' does not exist (expected a directory written by `transferkit fit`).")
    if is_pretrain_run(p):
        raise DataError(f"'{p}' is a pretraining run (a masked-LM-adapted encoder, no classifier), so it cannot "
                        f"predict or be evaluated. Use it as a backbone: transferkit fit --backbone run:{p.as_posix()} "
                        "--train LABELLED ...")
    info = read_run_json(p)
    verify(p, info)
    if not (p / "model.safetensors").exists():
        raise DataError(f"'{p}' is not a complete run (no model.safetensors); it may be from an interrupted fit. "
                        "Fit again.")
    try:
        config = FitConfig.from_yaml(p / "config.yaml")
    except (ConfigError, OSError, UnicodeDecodeError) as e:
        raise _damaged(p / "config.yaml", str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    meta = read_run_file(p / "backbone.json")
    labels = read_run_file(p / "labels.json")
    if not isinstance(labels, dict) or not isinstance(meta, dict) or "spec" not in meta:
        bad = p / ("labels.json" if not isinstance(labels, dict) else "backbone.json")
        raise _damaged(bad, "not the mapping a run writes")
    try:
        model = _rebuild_model(p, config, meta, labels, info)
    except (TransferkitError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"Run '{p}' is damaged: its model cannot be rebuilt from run.json, backbone.json, "
                        f"labels.json and config.yaml ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}). "
                        "Restore the run folder from a backup or fit again.") from None
    _load_weights(model, p / "model.safetensors")
    model.eval()
    return LoadedRun(p, config, model, labels, info)


def run_info(config: FitConfig, started: float, extra: dict[str, Any]) -> dict[str, Any]:
    return {"status": "complete", "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": time.time() - started, "seed": config.seed, "environment": environment(), **extra}
