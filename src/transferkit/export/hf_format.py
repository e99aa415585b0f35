"""``--format hf``: a text run as a transformers sequence-classification folder that
``AutoModelForSequenceClassification.from_pretrained(DIR)`` and ``pipeline("text-classification", model=DIR)`` load
without custom code, with the run's labels (``id2label`` / ``label2id``).

What is exact: ``BertForSequenceClassification`` computes ``classifier(tanh(pooler(h[:, 0])))``, where ``h`` is
the encoder's last hidden state. A run that *[CLS]-pools* (``pooling: cls``) and has a linear head computes
``head(h[:, 0])``; with the pooler set to ``eps * I`` (``eps = 2**-16``, a power of two, so the scaling is exact)
and the classifier to ``head / eps``, the model computes ``head(tanh(eps * h0) / eps)``, which differs from
``head(h0)`` by a relative ``(eps * h0)**2 / 3`` (below 1e-7 for |h0| < 20), far under float32 rounding of the
logits. A regression head folds the target's mean and std into the classifier, so logits are predictions.

What is not: a *mean-pooled* run (every ``transferkit fit`` of a text encoder today) averages the token states
over the attention mask; no stock transformers classifier over a BERT encoder does that (they all read one token,
through a tanh / GELU / LayerNorm head), so it would need ``trust_remote_code``. Such runs, and hybrid runs,
image runs, non-Hugging-Face backbones and MLP heads, are refused with the format that works (onnx).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones.hf import HFTextBackbone
from ..data.dataset import Dataset
from ..errors import ConfigError
from ..registry import Registry
from ..runs.store import LoadedRun
from .input_files import input_files
from .parity import EXACT, ParityRule

EPS = 2.0 ** -16  # the pooler's scale: tanh(EPS * x) / EPS == x to a relative (EPS * x)**2 / 3
LABELS = "labels.json"
BATCH = 32

# model_type -> writes the run's [CLS] head into a freshly built sequence classifier whose encoder holds the
# run's weights: (classifier model, head weight [C, H], head bias [C]) -> None
HF_HEADS: Registry[Callable[[nn.Module, torch.Tensor, torch.Tensor], None]] = Registry(
    "transformers classifier type", " Use --format onnx for other encoders.")


@HF_HEADS.register("bert", "BertForSequenceClassification: pooler eps*I (tanh near identity), classifier head/eps")
def _bert_head(clf: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    dense = clf.bert.pooler.dense
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0]) * EPS)
        dense.bias.zero_()
        clf.classifier.weight.copy_(weight / EPS)
        clf.classifier.bias.copy_(bias)


def _refuse(run: LoadedRun, why: str) -> ConfigError:
    return ConfigError(f"Run '{run.path}' cannot be exported as --format hf: {why}. Use --format onnx (the same "
                       "probabilities, one graph with its input files beside).")


def _head(run: LoadedRun) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's linear head as (weight, bias), the regression target's scale folded in."""
    lin = run.model.head
    w, b = lin.weight.detach().float().clone(), lin.bias.detach().float().clone()
    if run.label_map is None:
        std, mean = float(run.model.target_std), float(run.model.target_mean)
        w, b = w * std, b * std + mean
    return w, b


def _label_names(run: LoadedRun) -> list[str]:
    if run.label_map is None:
        return ["prediction"]
    names = [str(c) for c in run.label_map.classes]
    if len(set(names)) != len(names):
        raise _refuse(run, "two of its classes have the same text, which id2label cannot tell apart")
    return names


@dataclass(frozen=True)
class HfFormat:
    """The transformers format (see the module docstring)."""

    name: str
    rules: dict[str, ParityRule]

    def check(self, run: LoadedRun) -> None:
        """Refuse (one-line ConfigError) a run that no stock transformers classifier expresses exactly."""
        b = run.model.backbone
        if b.meta.modality != "text":
            raise _refuse(run, "it is an image run, and transformers' text-classification models take text")
        if not isinstance(b, HFTextBackbone):
            raise _refuse(run, f"its backbone '{b.meta.spec}' is not a Hugging Face text encoder")
        if run.model.lexical is not None:
            raise _refuse(run, "it is a hybrid run whose TF-IDF branch reads the raw text, which no transformers "
                               "classifier holds (the onnx export takes its terms as a second input)")
        if not isinstance(run.model.head, nn.Linear):
            raise _refuse(run, f"its '{run.info.get('head', 'mlp')}' head is not the single linear layer a "
                               "transformers classifier ends in")
        kind = getattr(b.model.config, "model_type", "?")
        if kind not in HF_HEADS:
            raise _refuse(run, f"its encoder type '{kind}' has no exact sequence-classification form here "
                               f"(supported: {', '.join(HF_HEADS.names())})")
        if b.pooling != "cls":
            raise _refuse(run, f"it {b.pooling}-pools the encoder's token states, and stock transformers "
                               "classifiers read the [CLS] token through a tanh pooler, so only custom code "
                               "(trust_remote_code) could give its probabilities; fit with --pooling cls")
        _label_names(run)

    def write(self, run: LoadedRun, folder: Path, samples: Dataset, say: Callable[[str], None]) -> dict[str, Any]:
        from transformers import AutoModelForSequenceClassification

        b = run.model.backbone
        names = _label_names(run)
        cfg = copy.deepcopy(b.model.config)
        cfg.num_labels = len(names)
        cfg.id2label = dict(enumerate(names))
        cfg.label2id = {n: i for i, n in enumerate(names)}
        cfg.problem_type = "single_label_classification" if run.label_map is not None else "regression"
        say(f"building {type(b.model).__name__} sequence classifier with the run's encoder and head")
        clf = AutoModelForSequenceClassification.from_config(cfg).eval()
        base = getattr(clf, clf.base_model_prefix)
        missing, unexpected = base.load_state_dict(b.model.state_dict(), strict=False)
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise _refuse(run, f"its encoder's weights do not fit {type(clf).__name__} (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
        HF_HEADS.get(cfg.model_type)(clf, *_head(run))
        clf.save_pretrained(str(folder))
        files = sorted(p.name for p in folder.iterdir())
        files += input_files(b.preprocess).save(b.preprocess, folder)
        (folder / LABELS).write_text(json.dumps(run.labels, indent=1, default=str), encoding="utf-8")
        inputs = {"text": {"dtype": "str", "shape": ["batch"], "max_length": b.meta.max_length}}
        return {"inputs": inputs, "output": "probabilities" if run.label_map is not None else "prediction",
                "files": sorted({*files, LABELS}), "architecture": type(clf).__name__,
                "note": f"{type(clf).__name__}; its pooler is eps*I with eps = 2^-16 and its classifier the run's "
                        "head / eps, so tanh(eps*x)/eps passes the [CLS] state through (see parity)"}

    def predict(self, run: LoadedRun, folder: Path, ds: Dataset) -> np.ndarray:
        """The written folder loaded by transformers (tokenizer and model), on ``ds``'s texts."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
        texts, out = list(ds.inputs), []
        with torch.inference_mode():
            for s in range(0, len(texts), BATCH):
                enc = tok(texts[s:s + BATCH], truncation=True, padding=True, return_tensors="pt")
                out.append(model(**enc).logits.float())
        logits = torch.cat(out) if out else torch.empty(0, model.config.num_labels)
        if run.label_map is None:
            return logits[:, 0].numpy()
        return torch.softmax(logits, dim=-1).numpy()

    def usage(self, run: LoadedRun, details: dict[str, Any]) -> str:
        scores = "[[{'label': ..., 'score': ...}, ...] per text], all labels" if run.label_map is not None \
            else "[{'label': 'prediction', 'score': value}] per text (no function applied: regression)"
        return ('from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline\n\n'
                'EXPORT_DIR = "path/to/this/folder"\n'
                'clf = pipeline("text-classification", model=EXPORT_DIR, top_k=None)\n'
                f'clf(texts, truncation=True)  # {scores}\n\n'
                '# or the model itself (truncation=True cuts at the run\'s max_length, the saved model_max_length)\n'
                'tok = AutoTokenizer.from_pretrained(EXPORT_DIR)\n'
                'model = AutoModelForSequenceClassification.from_pretrained(EXPORT_DIR).eval()\n'
                'logits = model(**tok(texts, truncation=True, padding=True, return_tensors="pt")).logits\n'
                + ('probabilities = logits.softmax(-1)  # columns: model.config.id2label\n'
                   if run.label_map is not None else 'predictions = logits[:, 0]\n'))


HF = HfFormat("hf", EXACT)

__all__ = ["EPS", "HF", "HF_HEADS", "HfFormat"]
