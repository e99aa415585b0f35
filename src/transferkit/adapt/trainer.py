"""The adaptation loop: source cross-entropy plus ``trade_off`` times the components' losses, on paired
source / target batches, with evenly spaced checkpoints that compete in (unsupervised) selection.

Image batches of both domains go through the network together (BatchNorm sees both, as in TLlib's
examples); text batches are padded separately and go through one after the other. The source-only
baseline never forwards target data during training.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from ..engine.model import TransferModel
from .adabn import adapt_batchnorm
from .methods import Component, Step
from .selection import dev_risk


class FeatureInputs:
    """Precomputed (frozen-backbone) features served like ``engine.inputs.Inputs``."""

    def __init__(self, features: np.ndarray) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        return self.x[torch.as_tensor(np.asarray(idx), dtype=torch.long)]


@dataclass
class DomainData:
    """Everything the loop reads. ``target`` has no labels; ``y_target_test`` is used for reporting only."""

    source: Any
    y_source: np.ndarray
    source_val: Any
    y_source_val: np.ndarray
    target: Any
    num_classes: int
    target_test: Any | None = None
    y_target_test: np.ndarray | None = None
    max_score_examples: int = 300

    def score_indices(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed subsamples of source-train and target used by the selection criteria."""
        rng = np.random.default_rng(seed + 7)
        s = np.sort(rng.permutation(len(self.source))[: self.max_score_examples])
        t = np.sort(rng.permutation(len(self.target))[: self.max_score_examples])
        return s, t


@dataclass
class AdaptSettings:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    checkpoints: int = 3
    seed: int = 0
    grad_clip: float = 10.0
    eval_batch_size: int = 128


def forward_pair(model: TransferModel, xs: Any, xt: Any) -> tuple[torch.Tensor, ...]:
    """(f_s, logits_s, f_t, logits_t)."""
    if isinstance(xs, torch.Tensor):
        f = model.backbone(torch.cat([xs, xt]))
        logits = model.head(f)
        n = len(xs)
        return f[:n], logits[:n], f[n:], logits[n:]
    f_s, f_t = model.backbone(xs), model.backbone(xt)
    return f_s, model.head(f_s), f_t, model.head(f_t)


@torch.no_grad()
def features_and_logits(model: TransferModel, inputs: Any, idx: np.ndarray | None = None,
                        batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Features and logits of ``inputs`` (or of the rows ``idx``), in order."""
    model.eval()
    idx = np.arange(len(inputs)) if idx is None else np.asarray(idx)
    feats, logits = [], []
    for s in range(0, len(idx), batch_size):
        f = model.backbone(inputs.batch(idx[s:s + batch_size]))
        feats.append(f.float())
        logits.append(model.head(f).float())
    if not feats:
        return np.empty((0, model.backbone.meta.feature_dim), np.float32), np.empty((0, 0), np.float32)
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def score_model(model: TransferModel, data: DomainData, seed: int, batch_size: int = 128) -> dict[str, Any]:
    """Unsupervised scores (for selection) and, when target test labels exist, the oracle metrics."""
    s_idx, t_idx = data.score_indices(seed)
    f_val, z_val = features_and_logits(model, data.source_val, batch_size=batch_size)
    f_src, _ = features_and_logits(model, data.source, s_idx, batch_size)
    f_tgt, z_tgt = features_and_logits(model, data.target, t_idx, batch_size)
    p_val = _softmax(z_val)
    loss_val = -np.log(np.clip(p_val[np.arange(len(p_val)), data.y_source_val], 1e-12, None))
    scores = {"source_val_accuracy": float((p_val.argmax(1) == data.y_source_val).mean()),
              "source_val_loss": float(loss_val.mean()),
              "target_entropy": float(_entropy(_softmax(z_tgt)).mean() / math.log(data.num_classes)),
              "dev_risk": dev_risk(f_src, f_tgt, f_val, loss_val, seed)}
    out: dict[str, Any] = {"scores": scores, "oracle": None, "test_probs": None}
    if data.target_test is not None and data.y_target_test is not None:
        _, z_te = features_and_logits(model, data.target_test, batch_size=batch_size)
        p_te = _softmax(z_te)
        pred = p_te.argmax(1)
        out["oracle"] = {"accuracy": float((pred == data.y_target_test).mean()),
                         "macro_f1": float(f1_score(data.y_target_test, pred, average="macro",
                                                    labels=np.arange(data.num_classes), zero_division=0))}
        out["test_probs"] = p_te
    return out


def target_batches(data: DomainData, batch_size: int) -> Iterator[Any]:
    for s in range(0, len(data.target), batch_size):
        yield data.target.batch(np.arange(s, min(s + batch_size, len(data.target))))


def checkpoint(model: TransferModel, data: DomainData, seed: int, post_hoc: bool, trade_off: float, step: int,
               progress: float, batch_size: int = 128) -> dict[str, Any]:
    """Score the model as it stands (after AdaBN on target data when ``post_hoc``) and keep its weights."""
    m = model
    if post_hoc:
        m = copy.deepcopy(model)
        adapt_batchnorm(m, target_batches(data, batch_size))
    cand = score_model(m, data, seed, batch_size)
    cand.update(trade_off=float(trade_off), step=int(step), progress=float(progress),
                state={k: v.detach().clone() for k, v in m.state_dict().items()})
    return cand


def posthoc_candidates(model: TransferModel, base: list[dict[str, Any]], data: DomainData,
                       seed: int) -> list[dict[str, Any]]:
    """AdaBN applied to every candidate of an already-trained run (e.g. the source-only baseline)."""
    out = []
    for c in base:
        model.load_state_dict(c["state"])
        out.append(checkpoint(model, data, seed, True, c["trade_off"], c["step"], c["progress"]))
    return out


def train_candidates(model: TransferModel, components: list[Component], data: DomainData, s: AdaptSettings,
                     trade_off: float, progress: bool = True,
                     desc: str = "adapt") -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Train ``model`` in place; return the checkpoints (candidates) and a per-checkpoint history."""
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    losses = [c for c in components if not c.post_hoc]
    post_hoc = any(c.post_hoc for c in components)
    use_target = bool(losses)
    params = [p for p in model.parameters() if p.requires_grad] + [p for c in losses for p in c.parameters()]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(len(data.source) / s.batch_size)
    total = s.epochs * steps_per_epoch
    marks = sorted({max(1, round(total * k / s.checkpoints)) for k in range(1, s.checkpoints + 1)})
    refresh_at = {total * k // 4 for k in (1, 2, 3)} if any(c.wants_refresh for c in losses) else set()
    ys = torch.as_tensor(data.y_source, dtype=torch.long)
    src_order: list[int] = []
    tgt_order: list[int] = []
    candidates, history, logs, t0 = [], [], {}, time.perf_counter()
    model.train()
    for c in losses:
        c.train()
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        for step in range(1, total + 1):
            p = (step - 1) / total
            if step - 1 in refresh_at:
                _, z = features_and_logits(model, data.target, batch_size=s.eval_batch_size)
                for c in losses:
                    logs.setdefault("pseudo_labelled", []).extend(c.refresh(_softmax(z)).values())
                model.train()
            if len(src_order) < s.batch_size:
                src_order.extend(rng.permutation(len(data.source)).tolist())
            idx_s = np.asarray(src_order[: s.batch_size])
            del src_order[: s.batch_size]
            xs = data.source.batch(idx_s)
            if use_target:
                if len(tgt_order) < s.batch_size:
                    tgt_order.extend(rng.permutation(len(data.target)).tolist())
                idx_t = np.asarray(tgt_order[: s.batch_size])
                del tgt_order[: s.batch_size]
                f_s, z_s, f_t, z_t = forward_pair(model, xs, data.target.batch(idx_t))
            else:
                f_s = model.backbone(xs)
                z_s = model.head(f_s)
            ce = F.cross_entropy(z_s, ys[torch.as_tensor(idx_s)])
            loss = ce
            logs.setdefault("source_ce", []).append(ce.item())
            if use_target:
                st = Step(f_s, z_s, f_t, z_t, idx_t, p)
                for c in losses:
                    v, info = c.loss(st)
                    loss = loss + trade_off * v
                    for k, val in info.items():
                        logs.setdefault(k, []).append(val)
            for g in opt.param_groups:
                g["lr"] = s.lr * (1 + 10 * p) ** -0.75
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, s.grad_clip)
            opt.step()
            bar.update(1)
            if step in marks:
                cand = checkpoint(model, data, s.seed, post_hoc, trade_off, step, step / total, s.eval_batch_size)
                candidates.append(cand)
                rec = {"trade_off": float(trade_off), "step": step, "seconds": time.perf_counter() - t0,
                       **{k: float(np.mean(v)) for k, v in logs.items() if v}, **cand["scores"]}
                if cand["oracle"]:
                    rec.update({f"target_test_{k}": v for k, v in cand["oracle"].items()})
                history.append(rec)
                logs = {}
                model.train()
                for c in losses:
                    c.train()
    model.eval()
    return candidates, history
