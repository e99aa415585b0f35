"""The run directory: written atomically (a partial dir renamed into place), loaded safely (safetensors)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from ..backbones import create_backbone
from ..backbones.base import Backbone
from ..baselines.tfidf import load_vocabularies, read_vocabulary, save_vocabularies
from ..config import FitConfig
from ..data.labels import LabelMap
from ..engine.model import TransferModel
from ..errors import ConfigError, DataError

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
            "numpy": np.__version__, "platform": platform.platform(), "threads": str(torch.get_num_threads())}


class RunWriter:
    """Collects a run in ``runs/.NAME.partial-PID`` and renames it to ``runs/NAME`` only when complete."""

    def __init__(self, runs_dir: str | Path, name: str, overwrite: bool = False) -> None:
        self.final = Path(runs_dir) / name
        if self.final.exists() and not overwrite:
            raise ConfigError(f"Run '{self.final}' already exists. Pick another --name or pass --overwrite.")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.parent / f".{name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self.overwrite = overwrite

    @property
    def dir(self) -> Path:
        return self.tmp

    def commit(self) -> Path:
        if self.final.exists():
            trash = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, trash)
            os.replace(self.tmp, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


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
    except (OSError, json.JSONDecodeError):
        return None


def is_pretrain_run(path: str | Path) -> bool:
    info = read_info(path)
    return isinstance(info, dict) and info.get("kind") == PRETRAIN_KIND


def load_run(path: str | Path) -> LoadedRun:
    """Load a complete run directory (refuses partial ones, and pretraining runs: they hold no classifier)."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"Run '{p}' does not exist (expected a directory written by `transferkit fit`).")
    if is_pretrain_run(p):
        raise DataError(f"'{p}' is a pretraining run (a masked-LM-adapted encoder, no classifier), so it cannot "
                        f"predict or be evaluated. Use it as a backbone: transferkit fit --backbone run:{p.as_posix()} "
                        "--train LABELLED ...")
    if not (p / RUN_MARKER).exists() or not (p / "model.safetensors").exists():
        raise DataError(f"'{p}' is not a complete run (no {RUN_MARKER} or model.safetensors); "
                        "it may be from an interrupted fit. Fit again.")
    info = json.loads((p / RUN_MARKER).read_text(encoding="utf-8"))
    config = FitConfig.from_yaml(p / "config.yaml")
    meta = json.loads((p / "backbone.json").read_text(encoding="utf-8"))
    labels = json.loads((p / "labels.json").read_text(encoding="utf-8"))
    backbone = rebuild_backbone(p, config, meta)
    n_out = len(labels["classes"]) if "classes" in labels else 1
    head = info.get("head", config.head)
    model = TransferModel(backbone, n_out, head)
    lexical = read_vocabulary(p, "lexical")  # a hybrid run's TF-IDF branch
    if lexical is not None:
        from ..engine.lexical import LexicalBranch

        model.lexical = LexicalBranch(len(lexical), n_out)
    load_vocabularies(model, p)
    load_model(model, str(p / "model.safetensors"), strict=True)
    model.eval()
    return LoadedRun(p, config, model, labels, info)


def run_info(config: FitConfig, started: float, extra: dict[str, Any]) -> dict[str, Any]:
    return {"status": "complete", "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": time.time() - started, "seed": config.seed, "environment": environment(), **extra}
