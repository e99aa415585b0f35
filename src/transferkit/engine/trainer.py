"""The one training loop. Every strategy that trains (fine-tune, LP-FT, domain adaptation; later distillation,
MLM) hands it a model, a batch plan, an *objective* and callbacks; the loop does the rest.

* objective: ``objective(model, batch, state) -> {"loss": t, ...}``: the first entry is minimised, the others
  are logged. An objective that is an ``nn.Module`` (e.g. with a domain discriminator) has its parameters trained.
* plan: ``plan.epoch(e) -> [item, ...]``, a deterministic function of the seed and the epoch, so that the
  position inside an epoch (``state.batch``) is all a checkpoint needs to continue the same batch order;
  ``collate(item) -> batch`` reads the data.
* callbacks (:mod:`transferkit.engine.callbacks`): validation, early stopping, progress, TensorBoard and
  checkpoints hook into named events; the loop itself knows none of them.
* the :class:`~transferkit.engine.accelerator.Accelerator` owns device, precision, seeds, threads and, under
  torchrun, distribution: each process runs its share of every global batch (the loop stays the same).

SIGINT / SIGTERM during :meth:`Trainer.fit` stop at the next optimiser step; a checkpoint callback then
writes a checkpoint, and :class:`TrainingInterrupted` says how to resume.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import TrainingInterrupted
from .accelerator import Accelerator
from .callbacks import ambient_callbacks

Objective = Callable[[nn.Module, Any, "TrainState"], dict[str, torch.Tensor]]


class BatchPlan(Protocol):
    def epoch(self, epoch: int) -> Sequence[Any]: ...


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint (JSON)."""

    epochs: int
    total_steps: int
    epoch: int = 1            # the epoch in progress (1-based)
    batch: int = 0            # batches of this epoch already done
    step: int = 0             # optimiser steps done
    epoch_done: bool = False  # the epoch's end events ran (a checkpoint taken then resumes at the next epoch)
    loss_sum: float = 0.0     # running sums for the epoch's mean training loss
    seen: int = 0
    should_stop: bool = False  # set by a callback: at an epoch end (early stopping) or at a step (a time budget)
    history: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, float] = field(default_factory=dict)      # last batch's losses (not saved)
    metrics: dict[str, float] = field(default_factory=dict)   # this epoch's end-of-epoch numbers (not saved)
    interrupted: str | None = None

    @property
    def progress(self) -> float:
        """Fraction of the optimiser steps done, in [0, 1] (the schedule argument of adaptation losses)."""
        return self.step / max(1, self.total_steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("logs", "metrics", "interrupted"):
            d.pop(k)
        return d


def warmup_cosine(warmup: float) -> Callable[[int, int], float]:
    """Linear warm-up over the first ``warmup`` fraction of steps, then cosine decay to 0."""

    def factor(step: int, total: int) -> float:
        warm = int(warmup * total)
        if step < warm:
            return (step + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return factor


def annealed(step: int, total: int) -> float:
    """DANN's schedule (Ganin et al., 2016): ``(1 + 10 p) ** -0.75``."""
    return (1 + 10 * step / max(1, total)) ** -0.75


def constant(step: int, total: int) -> float:
    return 1.0


class Trainer:
    """Runs ``objective`` over ``plan`` for ``epochs`` epochs with AdamW on ``param_groups``.

    Args:
        model: the module trained (and put in train mode at each epoch start).
        objective: see the module docstring.
        plan, collate: the batches of each epoch and how to read one.
        param_groups: AdamW parameter groups (``lr`` each); the objective's own parameters, if it is a module,
            are appended at ``lr``.
        epochs, lr, weight_decay, grad_clip, accumulate: the usual; ``schedule(step, total)`` scales each
            group's learning rate.
        steps_per_epoch: optimiser steps per epoch (for the schedule's total); default from the plan.
        callbacks: :class:`~transferkit.engine.callbacks.Callback` instances.
        accelerator: device / precision / seeds.
    """

    def __init__(self, model: nn.Module, objective: Objective, plan: BatchPlan, collate: Callable[[Any], Any],
                 param_groups: list[dict[str, Any]], *, epochs: int, lr: float, weight_decay: float = 0.0,
                 grad_clip: float = 0.0, accumulate: int = 1,
                 schedule: Callable[[int, int], float] = constant, steps_per_epoch: int | None = None,
                 callbacks: Sequence[Any] = (), accelerator: Accelerator | None = None) -> None:
        self.model, self.objective, self.plan, self.collate = model, objective, plan, collate
        self.accelerator = accelerator or Accelerator()
        self.epochs, self.grad_clip, self.accumulate, self.schedule = epochs, grad_clip, accumulate, schedule
        groups = [dict(g) for g in param_groups]
        if isinstance(objective, nn.Module):
            extra = [p for p in objective.parameters() if p.requires_grad]
            if extra:
                groups.append({"params": extra, "lr": lr, "name": "objective"})
        groups = [g for g in groups if g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        for g in self.optimizer.param_groups:
            g["base_lr"] = g["lr"]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if steps_per_epoch is None:
            steps_per_epoch = math.ceil(len(plan.epoch(1)) / accumulate)
        self.state = TrainState(epochs=epochs, total_steps=epochs * steps_per_epoch)
        self.callbacks = sorted([*callbacks, *ambient_callbacks()], key=lambda c: getattr(c, "order", 0))

    # -- events ----------------------------------------------------------------------------------------------
    def emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    def callback(self, kind: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        st = self.state
        self.accelerator.prepare(self.model)
        if isinstance(self.objective, nn.Module):
            self.accelerator.prepare(self.objective)
        with _signals_set_flag(st):
            self.emit("on_fit_start")
            while st.epoch <= self.epochs and not st.should_stop:
                if st.epoch_done:
                    st.epoch, st.batch, st.epoch_done, st.loss_sum, st.seen = st.epoch + 1, 0, False, 0.0, 0
                    continue
                items = self.plan.epoch(st.epoch)
                self.emit("on_epoch_start")
                t0, seen0 = time.perf_counter(), st.seen
                self._run_batches(items)
                secs = time.perf_counter() - t0
                st.metrics = {"epoch": st.epoch, "train_loss": st.loss_sum / max(st.seen, 1), "seconds": secs,
                              "examples_per_s": (st.seen - seen0) / max(secs, 1e-9)}
                self.emit("on_epoch_end")
                st.history.append(dict(st.metrics))
                st.epoch_done = True
                self.emit("on_epoch_saved")
                self._stop_if_interrupted()
            self.emit("on_fit_end")
        return st

    def _run_batches(self, items: Sequence[Any]) -> None:
        st, acc = self.state, self.accelerator
        for b in range(st.batch, len(items)):
            n = _batch_size(items[b])
            item, mine = acc.shard(items[b], n)  # under torchrun: this process's share of the global batch
            batch = acc.to_device(self.collate(item))
            self.emit("on_batch_start", batch)
            with acc.autocast():
                losses = self.objective(self.model, batch, st)
            loss = next(iter(losses.values()))
            acc.backward(loss * acc.share(mine, n) / self.accumulate)
            st.loss_sum += acc.sum_over_processes(float(loss.detach()) * mine)
            st.seen += n
            st.logs = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in losses.items()}
            st.batch = b + 1
            if st.batch % self.accumulate == 0 or st.batch == len(items):
                for g in self.optimizer.param_groups:
                    g["lr"] = g["base_lr"] * self.schedule(st.step, st.total_steps)
                acc.clip_and_step(self.optimizer, self.params, self.grad_clip)
                self.optimizer.zero_grad(set_to_none=True)
                st.step += 1
                self.emit("on_step_end")
                self._stop_if_interrupted()
            self.emit("on_batch_end", n)
            if st.should_stop:  # a callback stopped training at this step (e.g. a time budget): end the epoch here
                break

    def _stop_if_interrupted(self) -> None:
        st = self.state
        st.interrupted, st.should_stop = self.accelerator.agree(st.interrupted, st.should_stop)  # all stop together
        if st.interrupted is None:
            return
        self.emit("on_interrupt")
        where = f"epoch {st.epoch}, step {st.step} of {st.total_steps}"
        hint = getattr(self, "resume_hint", None)
        raise TrainingInterrupted(f"{st.interrupted} at {where}; " + (
            f"checkpoint written. Resume with: {hint}" if hint else "no checkpoint is kept for this run."))

    # -- what a checkpoint holds -------------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        from .checkpoint import flatten_optimizer

        opt_t, opt_meta = flatten_optimizer(self.optimizer.state_dict())
        rng_t, rng_meta = self.accelerator.rng_state()
        tensors = {"model": dict(self.model.state_dict()), "optimizer": opt_t, "rng": rng_t}
        if isinstance(self.objective, nn.Module):
            tensors["objective"] = dict(self.objective.state_dict())
        meta: dict[str, Any] = {"state": self.state.to_dict(), "optimizer": opt_meta, "rng": rng_meta,
                                "callbacks": {}}
        for cb in self.callbacks:
            if hasattr(cb, "state_dict"):
                t, m = cb.state_dict(self)
                meta["callbacks"][cb.key] = m
                for k, v in t.items():
                    tensors.setdefault(f"cb-{cb.key}", {})[k] = v
        if hasattr(self.objective, "extra_state"):
            meta["objective"] = self.objective.extra_state()
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
        from .checkpoint import unflatten_optimizer

        self.model.load_state_dict(tensors["model"], strict=True)
        if isinstance(self.objective, nn.Module) and "objective" in tensors:
            self.objective.load_state_dict(tensors["objective"], strict=True)
        if hasattr(self.objective, "load_extra_state") and "objective" in meta:
            self.objective.load_extra_state(meta["objective"])
        self.optimizer.load_state_dict(unflatten_optimizer(tensors["optimizer"], meta["optimizer"]))
        for k, v in meta["state"].items():  # in place: the loop and the signal handler hold this object
            setattr(self.state, k, v)
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict"):
                cb.load_state_dict(self, tensors.get(f"cb-{cb.key}", {}), meta["callbacks"].get(cb.key, {}))
        self.accelerator.set_rng_state(tensors["rng"], meta["rng"])


def _batch_size(item: Any) -> int:
    if isinstance(item, dict):
        return int(item.get("n", 1))
    if isinstance(item, tuple):
        return len(item[0])
    return len(item)


class _signals_set_flag:
    """SIGINT / SIGTERM set ``state.interrupted`` (the loop stops at the next step); a second one raises."""

    def __init__(self, state: TrainState) -> None:
        self.state, self.saved = state, {}

    def __enter__(self) -> _signals_set_flag:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig, name in ((signal.SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, "terminated (SIGTERM)")):
            self.saved[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler(name))
        return self

    def _handler(self, name: str) -> Callable[[int, Any], None]:
        def handle(signum: int, frame: Any) -> None:
            if self.state.interrupted is not None:
                raise KeyboardInterrupt
            self.state.interrupted = name
        return handle

    def __exit__(self, *exc: Any) -> None:
        for sig, h in self.saved.items():
            signal.signal(sig, h)
