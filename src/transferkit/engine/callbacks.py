"""Callbacks of :class:`~transferkit.engine.trainer.Trainer`: each one job, each hooked into named events.

Events, in the order the trainer emits them: ``on_fit_start``, ``on_epoch_start``, ``on_batch_start(batch)``,
``on_step_end`` (after an optimiser step), ``on_batch_end(n)``, ``on_epoch_end`` (fills ``state.metrics``),
``on_epoch_saved`` (the epoch's record is in ``state.history``), ``on_interrupt`` (a signal arrived),
``on_fit_end``. Callbacks run in ascending ``order``. A callback with state that must survive a crash has a
``key`` and ``state_dict(trainer) -> (tensors, json)`` / ``load_state_dict(trainer, tensors, json)``.

Code outside a fit (a tuner) can listen to every epoch's validation metric with :func:`epoch_listener`, without
any config: each :class:`~transferkit.engine.trainer.Trainer` built inside the block gets an :class:`EpochListener`.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import fault_point, latest_checkpoint, load_checkpoint, save_checkpoint


class Callback:
    order = 0
    key = ""


class TrainMode(Callback):
    """Train mode at every epoch start; BatchNorm layers whose weights are all frozen (or every BatchNorm, with
    ``freeze_bn_stats``) stay in eval mode, so their running statistics do not move."""

    order = -50

    def __init__(self, freeze_bn_stats: bool = False) -> None:
        self.freeze_bn_stats = freeze_bn_stats

    def on_epoch_start(self, trainer: Any) -> None:
        trainer.model.train()
        if isinstance(trainer.objective, nn.Module):
            trainer.objective.train()
        for m in trainer.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if self.freeze_bn_stats or all(not p.requires_grad for p in m.parameters(recurse=False)):
                    m.eval()


class Validation(Callback):
    """``state.metrics[name] = score()`` at each epoch end (``score`` puts the model in eval mode itself)."""

    order = 10

    def __init__(self, score: Callable[[], float], name: str = "val_metric") -> None:
        self.score, self.name = score, name

    def on_epoch_end(self, trainer: Any) -> None:
        # under torchrun rank 0 scores and every process gets its number, so early stopping decides alike
        trainer.state.metrics[self.name] = float(trainer.accelerator.on_main(self.score))


class EpochListener(Callback):
    """Hands each epoch's validation metric (``state.metrics["val_metric"]``, higher is better) to ``listen``;
    ``listen`` may raise to end the fit (a tuner pruning a trial). Runs after :class:`Validation`."""

    order = 15

    def __init__(self, listen: Callable[[float], None]) -> None:
        self.listen = listen

    def on_epoch_end(self, trainer: Any) -> None:
        metric = trainer.state.metrics.get("val_metric")
        if metric is not None:
            self.listen(float(metric))


_LISTENERS: ContextVar[tuple[Callable[[float], None], ...]] = ContextVar("transferkit_epoch_listeners", default=())


@contextmanager
def epoch_listener(listen: Callable[[float], None]) -> Iterator[None]:
    """Within the block, every trainer created reports each epoch's validation metric to ``listen(metric)``."""
    token = _LISTENERS.set((*_LISTENERS.get(), listen))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def ambient_callbacks() -> list[Callback]:
    """The :class:`EpochListener` of each enclosing :func:`epoch_listener` block (none outside one)."""
    return [EpochListener(f) for f in _LISTENERS.get()]


class EarlyStopping(Callback):
    """Keep the weights with the best ``monitor`` (higher is better); stop after ``patience`` epochs without a
    gain; restore the best weights at the end. With ``initial`` the starting weights compete as epoch 0."""

    order = 20
    key = "early_stopping"

    def __init__(self, patience: int, monitor: str = "val_metric", initial: Callable[[], float] | None = None) -> None:
        self.patience, self.monitor, self.initial = patience, monitor, initial
        self.best_metric, self.best_epoch, self.bad, self.stopped_early = float("-inf"), 0, 0, False
        self.best_state: dict[str, torch.Tensor] | None = None

    def _keep(self, model: nn.Module) -> None:
        self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_fit_start(self, trainer: Any) -> None:
        if self.initial is not None and not getattr(trainer, "resumed", False):
            self.best_metric, self.best_epoch = float(trainer.accelerator.on_main(self.initial)), 0
            self._keep(trainer.model)

    def on_epoch_end(self, trainer: Any) -> None:
        st = trainer.state
        metric = st.metrics[self.monitor]
        if metric > self.best_metric:
            self.best_metric, self.best_epoch, self.bad = metric, st.epoch, 0
            self._keep(trainer.model)
        else:
            self.bad += 1
            if self.bad >= self.patience:
                self.stopped_early = st.should_stop = True

    def on_fit_end(self, trainer: Any) -> None:
        if self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
        trainer.model.eval()

    def state_dict(self, trainer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        meta = {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "bad": self.bad,
                "stopped_early": self.stopped_early, "has_best": self.best_state is not None}
        return (self.best_state or {}), meta

    def load_state_dict(self, trainer: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.best_metric, self.best_epoch = float(meta["best_metric"]), int(meta["best_epoch"])
        self.bad, self.stopped_early = int(meta["bad"]), bool(meta["stopped_early"])
        self.best_state = dict(tensors) if meta["has_best"] else None


class ProgressBar(Callback):
    """One tqdm bar per epoch (examples), with the running training loss."""

    order = 30

    def __init__(self, desc: str, examples_per_epoch: int, enabled: bool = True) -> None:
        self.desc, self.total, self.enabled, self.bar = desc, examples_per_epoch, enabled, None

    def on_epoch_start(self, trainer: Any) -> None:
        from tqdm.auto import tqdm

        st = trainer.state
        self.enabled = self.enabled and trainer.accelerator.is_main  # one bar for a torchrun job: rank 0's
        self.bar = tqdm(total=self.total, initial=min(st.seen, self.total), desc=f"{self.desc} {st.epoch}/{st.epochs}",
                        unit="ex", disable=not self.enabled, leave=False)

    def on_batch_end(self, trainer: Any, n: int) -> None:
        st = trainer.state
        self.bar.update(n)
        if self.enabled:
            self.bar.set_postfix(loss=f"{st.loss_sum / max(st.seen, 1):.4f}")

    def on_epoch_end(self, trainer: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    on_interrupt = on_epoch_end


class TensorBoard(Callback):
    """Per-epoch scalars (training loss, every end-of-epoch metric, throughput) under ``log_dir``."""

    order = 40

    def __init__(self, log_dir: Path) -> None:
        self.log_dir, self.writer = log_dir, None

    def on_fit_start(self, trainer: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if trainer.accelerator.is_main:  # rank 0 alone writes
            self.writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, trainer: Any) -> None:
        if self.writer is None:
            return
        m, e = trainer.state.metrics, trainer.state.epoch
        for k, v in m.items():
            if k not in ("epoch", "seconds"):
                tag = "train/loss" if k == "train_loss" else (f"train/{k}" if k == "examples_per_s" else
                                                              ("val/metric" if k == "val_metric" else k))
                self.writer.add_scalar(tag, v, e)

    def on_fit_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()

    on_interrupt = on_fit_end


class Checkpoint(Callback):
    """Crash-safe checkpoints under ``root`` at every epoch end, every ``every`` optimiser steps (0: only at
    epoch ends) and when a signal stops training; with ``resume`` the latest one is loaded at fit start.

    ``fingerprint`` (JSON: whatever defines the run) is stored and must match on resume.
    """

    order = 100
    key = "checkpoint"

    def __init__(self, root: Path, every: int = 0, resume: bool = False,
                 fingerprint: dict[str, Any] | None = None) -> None:
        self.root, self.every, self.resume, self.fingerprint = Path(root), every, resume, fingerprint or {}
        self.written = 0

    def on_fit_start(self, trainer: Any) -> None:
        trainer.resumed = False
        if not self.resume:
            return
        found = trainer.accelerator.on_main(self._read_latest)  # rank 0 reads it, every process loads it
        if found is None:
            return
        d, (tensors, meta) = found
        saved = meta.get("fingerprint", {})
        if saved != self.fingerprint:
            from ..errors import ConfigError

            keys = sorted(k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k))
            raise ConfigError(f"The checkpoint in '{d}' was written with other settings ({', '.join(keys)}); "
                              "resume with the settings it was started with, or start over with --overwrite.")
        trainer.load_state_dict(tensors, meta)
        trainer.resumed = True

    def _read_latest(self) -> tuple[str, tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]] | None:
        d = latest_checkpoint(self.root)
        return None if d is None else (str(d), load_checkpoint(d))

    def save(self, trainer: Any) -> Path | None:
        if not trainer.accelerator.is_main:  # rank 0 alone writes: every process holds the same state
            return None
        tensors, meta = trainer.state_dict()
        meta["fingerprint"] = self.fingerprint
        self.written += 1
        return save_checkpoint(self.root, trainer.state.step, tensors, meta, ordinal=self.written)

    def on_step_end(self, trainer: Any) -> None:
        step = trainer.state.step
        fault_point("at-step", step)
        if self.every and step % self.every == 0:
            self.save(trainer)

    def on_epoch_saved(self, trainer: Any) -> None:
        self.save(trainer)

    def on_interrupt(self, trainer: Any) -> None:
        self.save(trainer)


def keep_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state (for candidates kept in memory)."""
    return copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})
