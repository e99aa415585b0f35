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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from ..config import TrainConfig
from ..engine.accelerator import Accelerator
from ..engine.callbacks import Callback, Checkpoint, ProgressBar, TrainMode
from ..engine.loop import CheckpointSpec
from ..engine.model import TransferModel
from ..engine.trainer import Trainer, annealed
from .adabn import adapt_batchnorm
from .methods import Component, Step
from .selection import dev_risk


class FeatureInputs:
    """Precomputed (frozen-backbone) features served like ``features.inputs.Inputs``."""

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
    """One adaptation phase: the shared training settings, the number of selection checkpoints, the seed."""

    training: TrainConfig
    checkpoints: int = 3
    seed: int = 0
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


class AdaptPlan:
    """Each epoch's (source rows, target rows) pairs, ``steps`` of them, drawn from generators seeded by
    (seed, epoch); full batches throughout (permutations are chained where one runs out)."""

    def __init__(self, n_source: int, n_target: int, batch_size: int, steps: int, seed: int,
                 use_target: bool) -> None:
        self.n_s, self.n_t, self.bs, self.steps, self.seed, self.use_target = (n_source, n_target, batch_size,
                                                                               steps, seed, use_target)

    def _rows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        need = self.steps * self.bs
        return np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need].reshape(self.steps, -1)

    def epoch(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
        src = self._rows(self.n_s, np.random.default_rng([self.seed, epoch, 0]))
        if not self.use_target:
            return [(s, None) for s in src]
        tgt = self._rows(self.n_t, np.random.default_rng([self.seed, epoch, 1]))
        return list(zip(src, tgt))


class AdaptObjective(nn.Module):
    """Source cross-entropy plus ``trade_off`` times each component's loss (its parameters train with the model)."""

    def __init__(self, components: list[Component], trade_off: float) -> None:
        super().__init__()
        self.components = nn.ModuleList(components)
        self.trade_off = trade_off

    def forward(self, model: TransferModel, batch: dict[str, Any], state: Any) -> dict[str, Any]:
        if batch["xt"] is not None:
            f_s, z_s, f_t, z_t = forward_pair(model, batch["xs"], batch["xt"])
        else:
            f_s = model.backbone(batch["xs"])
            z_s = model.head(f_s)
        ce = F.cross_entropy(z_s, batch["ys"])
        loss, logs = ce, {"source_ce": ce.item()}
        if batch["xt"] is not None:
            st = Step(f_s, z_s, f_t, z_t, batch["idx_t"], state.progress)
            for c in self.components:
                v, info = c.loss(st)
                loss = loss + self.trade_off * v
                logs.update(info)
        return {"loss": loss, **logs}

    def extra_state(self) -> list[dict[str, Any]]:
        return [c.extra_state() for c in self.components]

    def load_extra_state(self, state: list[dict[str, Any]]) -> None:
        for c, st in zip(self.components, state):
            c.load_extra_state(st)


class Candidates(Callback):
    """Evenly spaced checkpoints that compete in (unsupervised) selection, the pseudo-label refreshes of
    components that want them, and one history record per checkpoint (losses averaged since the last one)."""

    order = 10
    key = "candidates"

    def __init__(self, data: DomainData, s: AdaptSettings, objective: AdaptObjective, post_hoc: bool,
                 marks: set[int], refresh_at: set[int]) -> None:
        self.data, self.s, self.objective, self.post_hoc = data, s, objective, post_hoc
        self.marks, self.refresh_at = marks, refresh_at
        self.candidates: list[dict[str, Any]] = []
        self.history: list[dict[str, float]] = []
        self.logs: dict[str, list[float]] = {}
        self.t0 = time.perf_counter()

    def on_batch_start(self, trainer: Any, batch: Any) -> None:
        if trainer.state.step in self.refresh_at:
            _, z = features_and_logits(trainer.model, self.data.target, batch_size=self.s.eval_batch_size)
            for c in self.objective.components:
                self.logs.setdefault("pseudo_labelled", []).extend(c.refresh(_softmax(z)).values())
            trainer.model.train()

    def on_step_end(self, trainer: Any) -> None:
        st = trainer.state
        for k, v in st.logs.items():
            if k != "loss":
                self.logs.setdefault(k, []).append(v)
        if st.step not in self.marks:
            return
        model, s = trainer.model, self.s
        cand = checkpoint(model, self.data, s.seed, self.post_hoc, self.objective.trade_off, st.step,
                          st.step / st.total_steps, s.eval_batch_size)
        self.candidates.append(cand)
        rec = {"trade_off": float(self.objective.trade_off), "step": st.step, "seconds": time.perf_counter() - self.t0,
               **{k: float(np.mean(v)) for k, v in self.logs.items() if v}, **cand["scores"]}
        if cand["oracle"]:
            rec.update({f"target_test_{k}": v for k, v in cand["oracle"].items()})
        self.history.append(rec)
        self.logs = {}
        model.train()
        self.objective.train()

    def state_dict(self, trainer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = candidates_to_tensors(self.candidates)
        return tensors, {"candidates": meta, "history": self.history, "logs": self.logs,
                         "elapsed": time.perf_counter() - self.t0}

    def load_state_dict(self, trainer: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.candidates = candidates_from_tensors(tensors, meta["candidates"])
        self.history, self.logs = meta["history"], meta["logs"]
        self.t0 = time.perf_counter() - meta["elapsed"]


def candidates_to_tensors(cands: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Candidates -> (tensors: weights and test probabilities, JSON: the rest), for checkpoints."""
    tensors, meta = {}, []
    for j, c in enumerate(cands):
        for k, v in c["state"].items():
            tensors[f"{j}/state/{k}"] = v
        if c["test_probs"] is not None:
            tensors[f"{j}/test_probs"] = torch.from_numpy(np.ascontiguousarray(c["test_probs"]))
        meta.append({k: v for k, v in c.items() if k not in ("state", "test_probs")})
    return tensors, meta


def candidates_from_tensors(tensors: dict[str, torch.Tensor], meta: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for j, m in enumerate(meta):
        pre = f"{j}/state/"
        state = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}
        probs = tensors.get(f"{j}/test_probs")
        out.append({**m, "state": state, "test_probs": None if probs is None else probs.numpy()})
    return out


def save_phase(root: Path, cands: list[dict[str, Any]], history: list[dict[str, float]]) -> None:
    """A finished training phase (its candidates and history) beside its checkpoints (the runs' one phase record)."""
    from safetensors.torch import save_file

    from ..runs.lifecycle import finish_phase

    tensors, meta = candidates_to_tensors(cands)
    finish_phase(root, lambda path: save_file({k: v.contiguous() for k, v in tensors.items()}, str(path)),
                 {"candidates": meta, "history": history})


def load_phase(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, float]]] | None:
    """The candidates and history of a finished phase, or None when it has not finished."""
    from safetensors.torch import load_file

    from ..runs.lifecycle import finished_phase

    done = finished_phase(root)
    if done is None:
        return None
    path, meta = done
    return candidates_from_tensors(load_file(str(path)), meta["candidates"]), meta["history"]


def train_candidates(model: TransferModel, components: list[Component], data: DomainData, s: AdaptSettings,
                     trade_off: float, progress: bool = True, desc: str = "adapt",
                     checkpoint: CheckpointSpec | None = None) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Train ``model`` in place on the engine's trainer; return the checkpoints (candidates) and their history.

    With ``checkpoint`` the phase keeps crash-safe checkpoints under ``checkpoint.root`` and, once finished, its
    candidates there too; resumed, a finished phase is read back instead of retrained.
    """
    if checkpoint is not None and checkpoint.resume:
        done = load_phase(checkpoint.root)
        if done is not None:
            return done
    torch.manual_seed(s.seed)
    losses = [c for c in components if not c.post_hoc]
    objective = AdaptObjective(losses, trade_off)
    use_target = bool(losses)
    steps_per_epoch = math.ceil(len(data.source) / s.training.batch_size)
    total = s.training.epochs * steps_per_epoch
    marks = {max(1, round(total * k / s.checkpoints)) for k in range(1, s.checkpoints + 1)}
    refresh_at = {total * k // 4 for k in (1, 2, 3)} if any(c.wants_refresh for c in losses) else set()
    ys = torch.as_tensor(data.y_source, dtype=torch.long)

    def collate(item: tuple[np.ndarray, np.ndarray | None]) -> dict[str, Any]:
        idx_s, idx_t = item
        return {"xs": data.source.batch(idx_s), "ys": ys[torch.as_tensor(idx_s)], "idx_t": idx_t,
                "xt": None if idx_t is None else data.target.batch(idx_t), "n": len(idx_s)}

    cands = Candidates(data, s, objective, any(c.post_hoc for c in components), marks, refresh_at)
    callbacks = [TrainMode(), cands, ProgressBar(desc, steps_per_epoch * s.training.batch_size, progress)]
    if checkpoint is not None:
        callbacks.append(Checkpoint(checkpoint.root, checkpoint.every, checkpoint.resume,
                                    {**checkpoint.fingerprint, "phase": desc, "trade_off": float(trade_off)}))
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": s.training.lr, "name": "model"}]
    trainer = Trainer(model, objective, AdaptPlan(len(data.source), len(data.target), s.training.batch_size,
                                                  steps_per_epoch, s.seed, use_target),
                      collate, groups, epochs=s.training.epochs, lr=s.training.lr,
                      weight_decay=s.training.weight_decay, grad_clip=s.training.grad_clip,
                      schedule=annealed, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, accelerator=Accelerator(device=s.training.device, seed=s.seed))
    trainer.resume_hint = checkpoint.resume_hint if checkpoint is not None else None
    trainer.fit()
    model.eval()
    if checkpoint is not None and trainer.accelerator.is_main:  # under torchrun rank 0 alone writes
        save_phase(checkpoint.root, cands.candidates, cands.history)
    return cands.candidates, cands.history
