"""Supervised training on the engine's :class:`~transferkit.engine.trainer.Trainer`: cross-entropy (or MSE /
Huber) objective, AdamW with layer-wise LR decay, warm-up + cosine, clipping, accumulation, early stopping on the
validation metric with the best weights kept, and crash-safe checkpoints when asked for."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from ..features.inputs import Inputs
from ..backbones.recipes import resolve_training
from ..config import TrainConfig
from .accelerator import Accelerator, module_device, move_to
from .callbacks import Checkpoint, EarlyStopping, ProgressBar, TensorBoard, TrainMode, Validation
from .model import TransferModel
from .trainer import Objective, Trainer, warmup_cosine


@dataclass
class TaskSpec:
    """What the supervised objective optimises (how it trains is a :class:`~transferkit.config.TrainConfig`)."""

    task: str = "classification"
    loss: str = "mse"  # regression: mse | huber
    class_weights: np.ndarray | None = None


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("-inf")
    stopped_early: bool = False


def param_groups(model: TransferModel, s: TrainConfig,
                 trainable: Callable[[str, nn.Parameter], bool] | None = None) -> list[dict[str, Any]]:
    """Freeze the bottom ``s.freeze`` layer groups; decay the LR by ``layer_decay`` per group below the head.

    ``trainable(name, param)``, when given, says which parameters an objective trains at all (e.g. adapters):
    the others are left frozen and out of every group, whatever their layer group. An unset ``s.lr`` is the
    backbone family's default (:mod:`transferkit.backbones.recipes`).
    """
    s = resolve_training(s, model.backbone.meta)
    params = dict(model.named_parameters())
    groups = model.backbone.layer_groups()
    n = len(groups)

    def take(names: list[str]) -> list[nn.Parameter]:
        ps = []
        for nm in names:
            p = params[nm]
            on = trainable is None or trainable(nm, p)
            p.requires_grad_(on)
            if on:
                ps.append(p)
        return ps

    out = []
    for i, names in enumerate(groups):
        if i < s.freeze:
            for nm in names:
                params[f"backbone.{nm}"].requires_grad_(False)
            continue
        out.append({"params": take([f"backbone.{nm}" for nm in names]), "lr": s.lr * s.layer_decay ** (n - i),
                    "name": f"group{i}"})
    out.append({"params": take([nm for nm in params if nm.startswith("head.")]), "lr": s.lr, "name": "head"})
    return [g for g in out if g["params"]]


def autocast(precision: str, device_type: str = "cpu"):
    """Autocast context for inference at ``precision`` ("fp32" = plain arithmetic)."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type, dtype=dtype, enabled=precision in ("bf16", "fp16"))


@torch.inference_mode()
def predict_outputs(model: TransferModel, inputs: Inputs, batch_size: int = 64, precision: str = "fp32",
                    runtime: Any = None) -> np.ndarray:
    """Raw head outputs (logits, or the standardised regression value) in dataset order.

    ``runtime``: a :class:`~transferkit.features.runtimes.Runtime` that runs the backbone in place of eager
    PyTorch (compiled, ONNX Runtime); the run's head and lexical branch follow it as in ``model.forward``.
    """
    model.eval()
    device = module_device(model)
    out: np.ndarray | None = None
    for idx in inputs.order(batch_size, shuffle=False):
        if runtime is None:
            with autocast(precision, device.type):
                o = model(move_to(inputs.batch(idx), device))
        else:
            feats = runtime(runtime.prepare(inputs, idx)).float()
            o = model.from_features(feats, inputs.batch(idx) if model.lexical is not None else None)
        o = o.float().cpu().numpy()
        if out is None:
            out = np.empty((len(inputs), o.shape[1]), dtype=np.float32)
        out[idx] = o
    return out if out is not None else np.empty((0, 1), dtype=np.float32)


def validation_score(outputs: np.ndarray, y: np.ndarray, task: str) -> float:
    """Higher is better: macro-F1 for classification, minus RMSE for regression."""
    if task == "regression":
        return -float(np.sqrt(np.mean((outputs[:, 0] - y) ** 2)))
    return float(f1_score(y, outputs.argmax(1), average="macro"))


def _loss_fn(spec: TaskSpec, label_smoothing: float = 0.0) -> nn.Module:
    if spec.task == "regression":
        return nn.HuberLoss() if spec.loss == "huber" else nn.MSELoss()
    w = None if spec.class_weights is None else torch.as_tensor(spec.class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=w, label_smoothing=label_smoothing)


@dataclass
class CheckpointSpec:
    """Where and how often a training run keeps crash-safe checkpoints (see :mod:`.checkpoint`)."""

    root: Path
    every: int = 0
    resume: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)
    resume_hint: str | None = None


class EpochPlan:
    """Each epoch's batches: ``passes`` shuffled passes, drawn from a generator seeded by (seed, epoch), so
    any epoch's order can be rebuilt after a crash."""

    def __init__(self, inputs: Inputs, batch_size: int, passes: int, seed: int, buckets: bool = True) -> None:
        self.inputs, self.batch_size, self.passes, self.seed, self.buckets = inputs, batch_size, passes, seed, buckets

    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        return [b for _ in range(self.passes)
                for b in self.inputs.order(self.batch_size, shuffle=True, rng=rng, buckets=self.buckets)]


class SupervisedObjective:
    """Cross-entropy (or MSE / Huber for regression) of the model's outputs on ``batch = (x, targets)``."""

    def __init__(self, spec: TaskSpec, label_smoothing: float = 0.0) -> None:
        self.loss_fn, self.regression = _loss_fn(spec, label_smoothing), spec.task == "regression"

    def __call__(self, model: nn.Module, batch: tuple[Any, torch.Tensor], state: Any) -> dict[str, torch.Tensor]:
        x, target = batch
        out = model(x).float()
        return {"loss": self.loss_fn(out[:, 0], target) if self.regression else self.loss_fn(out, target)}


def train_model(model: TransferModel, train: Inputs, y_train: np.ndarray, val: Inputs, y_val: np.ndarray,
                s: TrainConfig, spec: TaskSpec | None = None, *, seed: int = 0, freeze_bn_stats: bool = False,
                log_dir: Path | None = None, progress: bool = True, desc: str = "fine-tune",
                eval_initial: bool = False, checkpoint: CheckpointSpec | None = None,
                trainable: Callable[[str, nn.Parameter], bool] | None = None,
                objective: Objective | None = None, targets: Any = None) -> History:
    """Train in place on the engine's trainer; on return the model holds the best validation weights.

    Args:
        s: the training settings (epochs, batch size, lr, layer decay, freeze, schedule, precision, device, ...).
        spec: the task, regression loss and class weights (default: classification, unweighted).
        seed: initialisation of what the trainer draws (dropout) and of every epoch's batch order.
        freeze_bn_stats: keep every BatchNorm's running statistics fixed (LP-FT).
        eval_initial: the starting weights (epoch 0, e.g. a fitted probe) compete for "best" too, so fine-tuning
            can never end worse on validation than where it started.
        checkpoint: write crash-safe checkpoints (and continue from the latest one when ``checkpoint.resume``).
        trainable: which parameters train at all (see :func:`param_groups`).
        objective: a loss in place of the supervised one (e.g. distillation's soft targets), called as the trainer's
            objective on ``(x, targets[rows])``; an ``nn.Module`` objective has its own parameters trained too.
        targets: the per-row training targets ``objective`` reads, indexed by a LongTensor of rows (default:
            ``y_train``).
    """
    spec = spec or TaskSpec()
    s = resolve_training(s, model.backbone.meta)
    torch.manual_seed(seed)
    groups = param_groups(model, s, trainable)
    batches_per_pass = math.ceil(len(train) / s.batch_size)
    passes = max(1, math.ceil(s.min_steps * s.accumulate / max(1, s.epochs * batches_per_pass)))
    ytr = targets if targets is not None else \
        torch.as_tensor(y_train, dtype=torch.float32 if spec.task == "regression" else torch.long)

    def score() -> float:
        return validation_score(predict_outputs(model, val, s.batch_size * 2, s.precision), y_val, spec.task)

    stopper = EarlyStopping(s.patience, initial=score if eval_initial else None)
    callbacks: list[Any] = [TrainMode(freeze_bn_stats), Validation(score), stopper,
                            ProgressBar(desc, len(train) * passes, progress)]
    if log_dir is not None:
        callbacks.append(TensorBoard(log_dir))
    if checkpoint is not None:
        callbacks.append(Checkpoint(checkpoint.root, checkpoint.every, checkpoint.resume, checkpoint.fingerprint))
    plan = EpochPlan(train, s.batch_size, passes, seed, s.length_buckets)
    objective = objective if objective is not None else SupervisedObjective(spec, s.label_smoothing)
    trainer = Trainer(model, objective, plan,
                      lambda idx: (train.batch(idx), ytr[torch.as_tensor(idx)]), groups, epochs=s.epochs, lr=s.lr,
                      weight_decay=s.weight_decay, grad_clip=s.grad_clip, accumulate=s.accumulate,
                      schedule=warmup_cosine(s.warmup), callbacks=callbacks,
                      accelerator=Accelerator(device=s.device, precision=s.precision, seed=seed))
    trainer.resume_hint = checkpoint.resume_hint if checkpoint is not None else None
    st = trainer.fit()
    return History(st.history, stopper.best_epoch, stopper.best_metric, stopper.stopped_early)
