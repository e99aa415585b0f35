"""The training loop: AdamW, layer-wise LR decay, warm-up + cosine, clipping, accumulation,
early stopping on the validation metric with the best weights kept. Fits on one screen on purpose."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from .inputs import Inputs
from .model import TransferModel


@dataclass
class TrainSettings:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    layer_decay: float = 0.75
    freeze: int = 0
    warmup: float = 0.1
    grad_clip: float = 1.0
    accumulate: int = 1
    patience: int = 3
    label_smoothing: float = 0.0
    class_weights: np.ndarray | None = None
    task: str = "classification"
    loss: str = "mse"
    seed: int = 0
    min_steps: int = 0  # small data: repeat passes within an epoch until epochs x steps >= min_steps
    freeze_bn_stats: bool = False  # keep BatchNorm running statistics (and eval-mode normalisation) fixed
    precision: str = "fp32"  # "bf16": forward/backward under CPU autocast (weights, optimiser and loss stay fp32)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("-inf")
    stopped_early: bool = False


def param_groups(model: TransferModel, s: TrainSettings) -> list[dict[str, Any]]:
    """Freeze the bottom ``s.freeze`` layer groups; decay the LR by ``layer_decay`` per group below the head."""
    params = dict(model.named_parameters())
    groups = model.backbone.layer_groups()
    n = len(groups)
    out = []
    for i, names in enumerate(groups):
        ps = [params[f"backbone.{nm}"] for nm in names]
        if i < s.freeze:
            for p in ps:
                p.requires_grad_(False)
            continue
        for p in ps:
            p.requires_grad_(True)
        out.append({"params": ps, "lr": s.lr * s.layer_decay ** (n - i), "name": f"group{i}"})
    head = [p for nm, p in params.items() if nm.startswith("head.")]
    for p in head:
        p.requires_grad_(True)
    out.append({"params": head, "lr": s.lr, "name": "head"})
    return [g for g in out if g["params"]]


def _freeze_frozen_norms(model: nn.Module, all_norms: bool = False) -> None:
    """BatchNorm layers whose weights are frozen (or all, with ``all_norms``) keep their running statistics."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if all_norms or all(not p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()


def autocast(precision: str):
    """CPU autocast context for ``precision`` ("fp32" = plain arithmetic)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def predict_outputs(model: TransferModel, inputs: Inputs, batch_size: int = 64, precision: str = "fp32") -> np.ndarray:
    """Raw head outputs (logits, or the standardised regression value) in dataset order."""
    model.eval()
    out: np.ndarray | None = None
    for idx in inputs.order(batch_size, shuffle=False):
        with autocast(precision):
            o = model(inputs.batch(idx))
        o = o.float()
        if getattr(model, "lexical", None) is not None:
            o = model.add_lexical([inputs.ds.inputs[i] for i in idx], o)
        o = o.numpy()
        if out is None:
            out = np.empty((len(inputs), o.shape[1]), dtype=np.float32)
        out[idx] = o
    return out if out is not None else np.empty((0, 1), dtype=np.float32)


def validation_score(outputs: np.ndarray, y: np.ndarray, task: str) -> float:
    """Higher is better: macro-F1 for classification, minus RMSE for regression."""
    if task == "regression":
        return -float(np.sqrt(np.mean((outputs[:, 0] - y) ** 2)))
    return float(f1_score(y, outputs.argmax(1), average="macro"))


def _loss_fn(s: TrainSettings) -> nn.Module:
    if s.task == "regression":
        return nn.HuberLoss() if s.loss == "huber" else nn.MSELoss()
    w = None if s.class_weights is None else torch.as_tensor(s.class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=w, label_smoothing=s.label_smoothing)


def train_model(model: TransferModel, train: Inputs, y_train: np.ndarray, val: Inputs, y_val: np.ndarray,
                s: TrainSettings, log_dir: Path | None = None, progress: bool = True,
                desc: str = "fine-tune", eval_initial: bool = False) -> History:
    """Train in place; on return the model holds the best validation weights.

    With ``eval_initial`` the starting weights (epoch 0, e.g. a fitted probe) compete for "best" too,
    so fine-tuning can never end worse on validation than where it started.
    """
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    groups = param_groups(model, s)
    opt = torch.optim.AdamW(groups, weight_decay=s.weight_decay)
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]
    batches_per_pass = math.ceil(len(train) / s.batch_size)
    passes = max(1, math.ceil(s.min_steps * s.accumulate / max(1, s.epochs * batches_per_pass)))
    steps_per_epoch = math.ceil(batches_per_pass * passes / s.accumulate)
    total, warm = s.epochs * steps_per_epoch, int(s.warmup * s.epochs * steps_per_epoch)

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    loss_fn = _loss_fn(s)
    ytr = torch.as_tensor(y_train, dtype=torch.float32 if s.task == "regression" else torch.long)
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    hist, best_state, step, bad = History(), None, 0, 0
    if eval_initial:
        hist.best_metric = validation_score(predict_outputs(model, val, s.batch_size * 2, s.precision), y_val, s.task)
        hist.best_epoch = 0
        best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, s.epochs + 1):
        model.train()
        _freeze_frozen_norms(model, s.freeze_bn_stats)
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        batches = [b for _ in range(passes) for b in train.order(s.batch_size, shuffle=True, rng=rng)]
        with tqdm(total=len(train) * passes, desc=f"{desc} {epoch}/{s.epochs}", unit="ex", disable=not progress,
                  leave=False) as bar:
            for b_i, idx in enumerate(batches):
                with autocast(s.precision):
                    out = model(train.batch(idx)).float()
                target = ytr[torch.as_tensor(idx)]
                loss = loss_fn(out[:, 0], target) if s.task == "regression" else loss_fn(out, target)
                (loss / s.accumulate).backward()
                if (b_i + 1) % s.accumulate == 0 or b_i + 1 == len(batches):
                    if s.grad_clip > 0:
                        nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], s.grad_clip)
                    for g in opt.param_groups:
                        g["lr"] = g["base_lr"] * lr_factor(step)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    step += 1
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
                bar.update(len(idx))
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        metric = validation_score(predict_outputs(model, val, s.batch_size * 2, s.precision), y_val, s.task)
        rec = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "val_metric": metric,
               "seconds": time.perf_counter() - t0, "examples_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
        hist.epochs.append(rec)
        if writer is not None:
            writer.add_scalar("train/loss", rec["train_loss"], epoch)
            writer.add_scalar("val/metric", metric, epoch)
            writer.add_scalar("train/examples_per_s", rec["examples_per_s"], epoch)
        if metric > hist.best_metric:
            hist.best_metric, hist.best_epoch, bad = metric, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= s.patience:
                hist.stopped_early = True
                break
    if writer is not None:
        writer.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist
