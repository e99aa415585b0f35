"""Few-shot text classification by contrastive fine-tuning of the sentence encoder, then the hybrid head.

The idea is SetFit's (Tunstall et al., 2022: "Efficient Few-Shot Learning Without Prompts"): tune the sentence
encoder so that texts of one class embed close together and texts of different classes far apart, then fit a
linear head on the tuned embeddings. Made cheaper:

* SetFit draws pairs and embeds both texts of every pair (two encoder passes per pair). Here each step embeds a
  batch of *unique* training texts once (all of them when there are at most ``batch_size``) and the loss runs over
  every pair in the batch: with 16 texts one step updates on 120 pairs for 16 encoder passes.
* Only the top ``TUNE_LAYERS`` transformer layers train (Hugging Face BERT-style encoders such as the packaged
  MiniLM); the frozen lower layers' hidden states are computed once per text (train and validation), so a step
  runs only the top layers. Other text backbones train whole.
* The head is the ``hybrid`` strategy's (TF-IDF word 1-2 grams + the tuned embeddings in one logistic model,
  weight and C chosen on validation), folded into the model exactly as ``hybrid`` does, so the saved run
  predicts like any other.
* After every epoch the hybrid head is fitted on the training embeddings and scored on validation (macro-F1);
  the best epoch's weights are kept, and the frozen encoder competes as epoch 0, so the result is never worse on
  validation than the frozen ``hybrid`` strategy.

Loss (``LOSS``): ``cosine`` is SetFit's CosineSimilarityLoss over all pairs of the batch (squared error between
the cosine similarity and 1 for a same-class pair, 0 otherwise); ``supcon`` is the supervised contrastive loss
(Khosla et al., 2020) at temperature ``TEMPERATURE``.

Few-shot defaults (used for every training setting left at ``TrainConfig``'s default; a value set by the user
wins): see :data:`DEFAULTS` and the constants below. Measured on SpamAssassin (subject + body, max_length 128,
packaged MiniLM, 1 thread; ``benchmarks/peers/jobs_fewshot.py``): k = 8 per class, seed 0: test macro-F1 0.859
against SetFit's 0.823 (batch 16, 40 steps, body lr 2e-5) at about a third of SetFit's CPU time (128 s vs 396 s);
tuning all 6 layers at lr 5e-5 scored 0.866 at 209 s, the top 3 at 5e-5 0.809.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..engine.accelerator import Accelerator, module_device, move_to
from ..engine.callbacks import Checkpoint, EarlyStopping, ProgressBar, TensorBoard, TrainMode, Validation
from ..engine.loop import param_groups
from ..engine.model import TransferModel
from ..engine.trainer import Trainer, warmup_cosine
from ..errors import ConfigError
from ..features.inputs import Inputs
from .base import FitContext, StrategyResult
from .hybrid import HybridModel, fit_hybrid, hybrid_result

# Few-shot training defaults, each used where the run's TrainConfig holds TrainConfig's own default.
DEFAULTS = {
    "lr": 1e-4,          # encoder learning rate (SetFit: 2e-5; k=8, seed 0: 5e-5 0.809, 1e-4 0.859 test macro-F1)
    "epochs": 4,         # evaluations on validation (each epoch: STEPS_PER_EPOCH optimiser steps)
    "batch_size": 32,    # unique texts embedded per step (all of them when there are fewer)
    "warmup": 0.1,
    "weight_decay": 0.01,
    "patience": 2,
}
STEPS_PER_EPOCH = 5  # optimiser steps between two validations (``min_steps``, when set, is the total instead)
TUNE_LAYERS = 3      # top transformer layers trained (the rest frozen and precomputed; 6 = all of MiniLM's)
LOSS = "cosine"      # cosine | supcon
TEMPERATURE = 0.1    # supcon only


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings of one contrastive fit."""

    training: TrainConfig
    steps_per_epoch: int
    tune_layers: int
    loss: str
    temperature: float

    def to_dict(self) -> dict[str, Any]:
        t = self.training
        return {"lr": t.lr, "epochs": t.epochs, "batch_size": t.batch_size, "steps_per_epoch": self.steps_per_epoch,
                "warmup": t.warmup, "weight_decay": t.weight_decay, "patience": t.patience, "freeze": t.freeze,
                "tune_layers": self.tune_layers, "loss": self.loss, "temperature": self.temperature}


def resolve_settings(training: TrainConfig, n_groups: int, tune_layers: int | None = None, loss: str | None = None,
                     temperature: float | None = None) -> Settings:
    """The few-shot defaults for every setting of ``training`` left at TrainConfig's default.

    ``freeze`` (layer groups, embeddings first) set by the user overrides ``tune_layers``; ``min_steps`` set by the
    user is the total number of optimiser steps, spread over the epochs."""
    tune_layers = TUNE_LAYERS if tune_layers is None else tune_layers
    loss = LOSS if loss is None else loss
    temperature = TEMPERATURE if temperature is None else temperature
    base = TrainConfig()
    given = {k: getattr(training, k) for k in DEFAULTS if getattr(training, k) != getattr(base, k)}
    s = dataclasses.replace(training, **{**DEFAULTS, **given})
    steps = STEPS_PER_EPOCH
    if training.min_steps != base.min_steps and training.min_steps > 0:
        steps = max(1, math.ceil(training.min_steps / s.epochs))
    # layer groups: the embeddings first, then one per transformer layer; the embeddings stay frozen by default
    # (AdamW on a 30k-word embedding matrix would cost more than the top layers it updates)
    if training.freeze != base.freeze:
        freeze = training.freeze
    else:
        freeze = n_groups - min(tune_layers, n_groups - 1)
    freeze = min(freeze, n_groups - 1)  # something must train
    s = dataclasses.replace(s, freeze=freeze)
    return Settings(s, steps, n_groups - freeze, loss, temperature)


# -- the encoder, split into a frozen bottom (run once per text) and a trained top ------------------------------
class SplitEncoder:
    """Runs ``backbone`` (a Hugging Face BERT-style text encoder: ``model.embeddings`` + ``model.encoder.layer``) as
    frozen lower layers (the embeddings and the first ``freeze - 1`` transformer layers), whose per-text hidden
    states are computed once, and the top layers on them at every step. ``freeze == 0`` (or another kind of
    backbone): the whole backbone runs at every step, from the token ids.

    Attributes:
        frozen: transformer layers in the precomputed bottom; None when nothing is precomputed.
    """

    def __init__(self, backbone: nn.Module, freeze: int) -> None:
        model = getattr(backbone, "model", None)
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        ok = (model is not None and hasattr(model, "embeddings") and isinstance(layers, nn.ModuleList)
              and getattr(backbone, "pooling", None) in ("mean", "cls") and 1 <= freeze <= len(layers))
        self.backbone = backbone
        self.layers = layers if ok else None
        self.frozen = freeze - 1 if ok else None

    @staticmethod
    def _mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The additive 4-D attention mask [B, 1, 1, T] (0 keep, very negative for padding)."""
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def _run(self, layers: Any, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ext = self._mask(mask, h.dtype)
        for layer in layers:
            out = layer(h, ext)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def _pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.backbone.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    @torch.inference_mode()
    def lower(self, inputs: Inputs, batch_size: int = 64) -> list[torch.Tensor] | None:
        """Per text, the hidden states [length, dim] after the frozen layers (None when nothing is frozen)."""
        if self.frozen is None:
            return None
        self.backbone.eval()
        device = module_device(self.backbone)
        out: list[torch.Tensor | None] = [None] * len(inputs)
        for idx in inputs.order(batch_size, shuffle=False):
            b = move_to(inputs.batch(idx, texts=False), device)
            h = self.backbone.model.embeddings(input_ids=b["input_ids"])
            h = self._run(self.layers[: self.frozen], h, b["attention_mask"])
            lengths = b["attention_mask"].sum(1).tolist()
            for j, i in enumerate(idx):
                out[int(i)] = h[j, : int(lengths[j])].float().cpu().clone()
        return out

    def batch(self, inputs: Inputs, hidden: list[torch.Tensor] | None, idx: np.ndarray) -> dict[str, Any]:
        """What :meth:`encode` reads for rows ``idx``: padded lower hidden states + mask, or the token batch."""
        if hidden is None:
            return inputs.batch(idx, texts=False)
        rows = [hidden[int(i)] for i in idx]
        longest = max(len(r) for r in rows)
        h = torch.zeros((len(rows), longest, rows[0].shape[1]), dtype=rows[0].dtype)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for j, r in enumerate(rows):
            h[j, : len(r)], mask[j, : len(r)] = r, 1
        return {"hidden": h, "attention_mask": mask}

    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Sentence embeddings [B, dim] of a :meth:`batch` (gradients flow into the trained layers)."""
        if "hidden" not in batch:
            return self.backbone(batch)
        h = self._run(self.layers[self.frozen:], batch["hidden"], batch["attention_mask"])
        return self._pool(h, batch["attention_mask"])

    @torch.inference_mode()
    def embed(self, inputs: Inputs, hidden: list[torch.Tensor] | None, batch_size: int = 64) -> np.ndarray:
        """Embeddings [N, dim] of every row (eval mode)."""
        self.backbone.eval()
        device = module_device(self.backbone)
        out = np.empty((len(inputs), self.backbone.meta.feature_dim), dtype=np.float32)
        for idx in inputs.order(batch_size, shuffle=False):
            out[idx] = self.encode(move_to(self.batch(inputs, hidden, idx), device)).float().cpu().numpy()
        return out


# -- the objective: a loss over every pair of the batch ------------------------------------------------------
def pair_loss(z: torch.Tensor, y: torch.Tensor, kind: str = LOSS, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``cosine``: mean over pairs i < j of (cos(z_i, z_j) - [y_i == y_j])^2 (SetFit's CosineSimilarityLoss);
    ``supcon``: the supervised contrastive loss (Khosla et al., 2020) of the L2-normalised embeddings."""
    zn = F.normalize(z.float(), dim=1)
    sim = zn @ zn.T
    same = (y[:, None] == y[None, :]).float()
    n = len(y)
    if kind == "cosine":
        iu = torch.triu_indices(n, n, 1, device=z.device)
        return ((sim - same)[iu[0], iu[1]] ** 2).mean()
    if kind != "supcon":
        raise ConfigError(f"Unknown contrastive loss '{kind}'. Choose from: cosine, supcon.")
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (sim / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = same.masked_fill(eye, 0.0)
    has = pos.sum(1) > 0
    per = -(log_prob.masked_fill(eye, 0.0) * pos).sum(1) / pos.sum(1).clamp_min(1.0)
    return per[has].mean() if bool(has.any()) else sim.sum() * 0.0


class PairObjective:
    """``{"loss": pair_loss(encoder(batch), batch["y"])}`` for the engine's trainer."""

    def __init__(self, encoder: SplitEncoder, kind: str, temperature: float) -> None:
        self.encoder, self.kind, self.temperature = encoder, kind, temperature

    def __call__(self, model: nn.Module, batch: dict[str, Any], state: Any) -> dict[str, torch.Tensor]:
        return {"loss": pair_loss(self.encoder.encode(batch), batch["y"], self.kind, self.temperature)}


class UniqueTextPlan:
    """Each epoch: ``steps`` batches of distinct training rows, class-stratified when the rows outnumber
    ``batch_size`` (every batch then holds every class), drawn from a generator seeded by (seed, epoch)."""

    def __init__(self, y: np.ndarray, batch_size: int, steps: int, seed: int) -> None:
        self.y, self.batch_size, self.steps, self.seed = np.asarray(y), batch_size, steps, seed

    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.y)
        if n <= self.batch_size:
            return [rng.permutation(n) for _ in range(self.steps)]
        out = []
        for _ in range(self.steps):
            # round-robin over the classes, each in a random order: every class gets its share of the batch
            per = [rng.permutation(np.flatnonzero(self.y == c)) for c in np.unique(self.y)]
            rows = [p[i] for i in range(max(map(len, per))) for p in per if i < len(p)]
            out.append(np.sort(np.asarray(rows[: self.batch_size], dtype=np.int64)))
        return out


def fit_contrastive(ctx: FitContext) -> StrategyResult:
    """The ``contrastive`` strategy (see the module docstring)."""
    if ctx.train.is_image or ctx.train.ds.modality != "text":
        raise ConfigError("Strategy 'contrastive' tunes a sentence encoder on pairs of texts and needs text data; "
                          "use linear-probe, lp-ft or fine-tune for images.")
    if ctx.task != "classification":
        raise ConfigError("Strategy 'contrastive' learns from pairs of same / different class and needs a "
                          "classification task; use hybrid or fine-tune for regression.")
    t0 = time.perf_counter()
    n_groups = len(ctx.backbone.layer_groups())
    st = resolve_settings(ctx.config.training, n_groups)
    s = st.training
    seed = ctx.config.seed
    torch.manual_seed(seed)
    model = TransferModel(ctx.backbone, ctx.n_out, "linear")  # its head is written by the hybrid fit at the end
    groups = param_groups(model, s, lambda name, p: not name.startswith("head."))
    encoder = SplitEncoder(ctx.backbone, s.freeze)
    ebs = max(s.batch_size, 64)
    h_tr, h_va = encoder.lower(ctx.train, ebs), encoder.lower(ctx.val, ebs)
    t_lower = time.perf_counter() - t0
    ytr = torch.as_tensor(ctx.y_train, dtype=torch.long)
    best: dict[str, Any] = {}

    def score(epoch: int) -> float:
        f_tr, f_va = encoder.embed(ctx.train, h_tr, ebs), encoder.embed(ctx.val, h_va, ebs)
        head = fit_hybrid(ctx.train.ds, f_tr, ctx.y_train, ctx.val.ds, f_va, ctx.y_val, ctx.task, ctx.n_out, seed,
                          ctx.config.class_weights)
        value = max(head.details["val_scores"].values())
        scores.append(round(value, 4))
        if not best or value > best["score"]:
            best.update(score=value, epoch=epoch, head=head, f_tr=f_tr, f_va=f_va)
        return value

    scores: list[float] = []
    stopper = EarlyStopping(s.patience, initial=lambda: score(0))
    plan = UniqueTextPlan(ctx.y_train, s.batch_size, st.steps_per_epoch, seed)
    per_epoch = sum(len(b) for b in plan.epoch(1))
    callbacks: list[Any] = [TrainMode(), Validation(lambda: score(trainer.state.epoch)), stopper,
                            ProgressBar("contrastive", per_epoch, ctx.progress)]
    if ctx.log_dir is not None:
        callbacks.append(TensorBoard(ctx.log_dir))
    if ctx.checkpoint is not None:
        c = ctx.checkpoint
        callbacks.append(Checkpoint(c.root, c.every, c.resume, c.fingerprint))

    def collate(idx: np.ndarray) -> dict[str, Any]:
        return {**encoder.batch(ctx.train, h_tr, idx), "y": ytr[torch.as_tensor(idx)]}

    trainer = Trainer(model, PairObjective(encoder, st.loss, st.temperature), plan, collate, groups,
                      epochs=s.epochs, lr=s.lr, weight_decay=s.weight_decay, grad_clip=s.grad_clip,
                      accumulate=1, schedule=warmup_cosine(s.warmup), steps_per_epoch=st.steps_per_epoch,
                      callbacks=callbacks, accelerator=Accelerator(device=s.device, precision=s.precision, seed=seed))
    trainer.resume_hint = ctx.checkpoint.resume_hint if ctx.checkpoint is not None else None
    state = trainer.fit()  # ends with the best epoch's weights (EarlyStopping)
    t_train = time.perf_counter() - t0
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    model.backbone.eval()
    if best.get("epoch") != stopper.best_epoch:
        # resumed from a checkpoint (the best epoch's head is not in memory): fit it on the restored encoder
        best.clear()
        score(stopper.best_epoch)

    def test_features() -> np.ndarray:
        from ..features.extract import extract_features

        return extract_features(model.backbone, ctx.test, ebs, "embed test", progress=ctx.progress)

    # the run saves the settings it trained with (the few-shot defaults, not the backbone family's)
    ctx.config = dataclasses.replace(ctx.config, training=s)
    head: HybridModel = best["head"]
    result = hybrid_result(ctx, best["f_tr"], best["f_va"], test_features, head=head)
    result.history = _history(state.history, stopper)
    result.details.update(contrastive={**st.to_dict(), "best_epoch": stopper.best_epoch,
                                       "stopped_early": stopper.stopped_early, "val_by_epoch": scores,
                                       "precomputed_layers": encoder.frozen},
                          extract_seconds=t_lower, train_seconds=t_train, cache_hits=ctx.cache.hits,
                          cache_misses=ctx.cache.misses,
                          fit_seconds=time.perf_counter() - t0)
    return result


def _history(epochs: list[dict[str, Any]], stopper: EarlyStopping):
    from ..engine.loop import History

    return History(epochs, stopper.best_epoch, stopper.best_metric, stopper.stopped_early)


__all__ = ["DEFAULTS", "LOSS", "PairObjective", "Settings", "SplitEncoder", "UniqueTextPlan", "fit_contrastive",
           "pair_loss", "resolve_settings"]
