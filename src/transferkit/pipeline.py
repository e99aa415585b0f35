"""fit: data -> splits -> backbone -> strategy -> evaluation -> run directory. The spine of the CLI and API."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import create_backbone, parse_spec
from .backbones.recipes import resolve_training
from .config import RUN_PLACEMENT, FitConfig
from .data import Columns, Dataset, LabelMap, load_path, stratified_split
from .engine.loop import CheckpointSpec
from .engine.model import TransferModel
from .engine.accelerator import seed_everything, set_threads  # noqa: F401 (tests patch pipeline.set_threads)
from .distributed.ddp import is_main_process
from .errors import ConfigError, DataError, bad_param
from .evaluation.evaluate import evaluate_model
from .features import ENGINES, FeatureCache, Inputs
from .strategies import STRATEGIES, FitContext, StrategyResult, traits

log = logging.getLogger("transferkit")


def check_names(c: FitConfig) -> Callable[[FitContext], StrategyResult]:
    """Resolve the registry names in ``c`` (strategy, backbone spec or ``auto`` candidates, engine), so that a bad
    one fails with a one-line ``ConfigError`` before any work; returns the strategy's fit function.
    (``FitConfig.validate`` checks types and ranges only.)"""
    strategy = STRATEGIES.get(c.strategy)
    if c.backbone == "auto":  # chosen by transferability ranking among the candidates (transferkit.ranking)
        for spec in (c.candidates or "").split(","):
            if spec.strip():
                parse_spec(spec.strip())
    else:
        prefix, _ = parse_spec(c.backbone)
        if prefix == "classical" and c.strategy != "classical":
            raise ConfigError(f"Backbone '{c.backbone}' is a classical featuriser fitted by the 'classical' strategy; "
                              f"it cannot be used with strategy '{c.strategy}'. Use --strategy classical, or a "
                              "pretrained / scratch backbone.")
    if c.engine not in ENGINES.names():
        raise bad_param("FitConfig", "engine", " | ".join(ENGINES.names()), c.engine)
    return strategy


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    note: str = ""


def load_splits(c: FitConfig, train: Dataset | None = None, val: Dataset | None = None,
                test: Dataset | None = None) -> Splits:
    """Given data or paths; missing val/test parts come from a seeded (stratified) split of train."""
    cols = Columns(text=c.text_column, image=c.image_column, label=c.label_column, id=c.id_column)
    if train is None:
        if c.train is None:
            raise DataError("No training data: pass --train PATH (an image folder or a CSV/JSONL/Parquet table).")
        train = load_path(c.train, cols, c.strict, task=c.task)
    if val is None and c.val:
        val = load_path(c.val, cols, c.strict, task=c.task)
    if test is None and c.test:
        test = load_path(c.test, cols, c.strict, task=c.task)
    strat = c.task == "classification"
    note = []
    if val is None and test is None:
        tr, va, te = stratified_split(train.y, (c.val_fraction, c.test_fraction), c.seed, strat)
        train, val, test = train.subset(tr), train.subset(va), train.subset(te)
        note.append(f"validation and test split from train ({c.val_fraction:.0%} / {c.test_fraction:.0%}, "
                    f"stratified, seed {c.seed})")
    elif val is None:
        tr, va = stratified_split(train.y, (c.val_fraction,), c.seed, strat)
        train, val = train.subset(tr), train.subset(va)
        note.append(f"validation split from train ({c.val_fraction:.0%}, seed {c.seed})")
    elif test is None:
        tr, te = stratified_split(train.y, (c.test_fraction,), c.seed, strat)
        train, test = train.subset(tr), train.subset(te)
        note.append(f"test split from train ({c.test_fraction:.0%}, seed {c.seed})")
    for part, ds in (("validation", val), ("test", test)):
        if ds.modality != train.modality:
            raise DataError(f"The {part} data ('{ds.origin}') are {ds.modality}s but training data are "
                            f"{train.modality}s.")
    return Splits(train, val, test, "; ".join(note))


def encode_targets(c: FitConfig, splits: Splits) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Label map (classification) or target standardisation (regression) from the training part only."""
    ys = [splits.train.y, splits.val.y, splits.test.y]
    if c.task == "regression":
        y = np.asarray(splits.train.y, dtype=np.float64)
        mean, std = float(y.mean()), float(y.std() or 1.0)
        return {"task": "regression", "target_mean": mean, "target_std": std}, \
            [(np.asarray(v, dtype=np.float64) - mean) / std for v in ys]
    lm = LabelMap.fit(splits.train.y)
    if len(lm) < 2:
        raise DataError(f"Training data '{splits.train.origin}' has only one class ({lm.classes[0]!r}); "
                        "a classifier needs at least 2.")
    enc = [lm.encode(v, where) for v, where in zip(ys, ("training data", "validation data", "test data"))]
    return {"task": "classification", **lm.to_dict()}, enc


@dataclass
class FitResult:
    run_dir: Path | None
    model: TransferModel
    labels: dict[str, Any]
    metrics: dict[str, Any]
    val_metrics: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


def fit(config: FitConfig, train: Dataset | None = None, val: Dataset | None = None, test: Dataset | None = None,
        progress: bool = True, save: bool = True, cache: FeatureCache | None = None,
        resume: bool = False) -> FitResult:
    """Fit one configuration end to end and (by default) write its run directory.

    With ``resume`` an interrupted fit of the same name (``runs/.NAME.partial`` with a checkpoint) continues from
    its latest checkpoint; the result equals that of an uninterrupted run (same thread count, CPU).

    Under torchrun every process calls this; rank 0 alone writes the run (and evaluates), the others train
    with it and return a result without ``run_dir`` or metrics.
    """
    c = config.validate()
    check_names(c)
    name = c.name or f"{c.strategy}-{c.backbone.split(':', 1)[-1].replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not save:
        return _fit(c, None, train, val, test, progress, cache)
    from .runs.lifecycle import RunHandle, partial_dir, start_run

    if not is_main_process():  # a torchrun worker: it trains, reads no run and writes nothing (see _fit)
        final = Path(c.runs_dir) / name
        return _fit(c, RunHandle(final, partial_dir(final), resume), train, val, test, False, cache)

    with start_run(c.runs_dir, name, overwrite=c.overwrite, resume=resume) as run:
        run.pin_config(c, RESUME_CONFIG)
        result = _fit(c, run, train, val, test, progress, cache)
    result.run_dir = run.final
    return result


RESUME_CONFIG = "config.yaml"  # the requested config of a run in progress, beside its checkpoints
def _fingerprint(c: FitConfig) -> dict[str, Any]:
    return {k: v for k, v in c.to_dict().items() if k not in RUN_PLACEMENT}


def saved_config(run_path: str | Path) -> FitConfig:
    """The config an interrupted run at ``run_path`` (``runs/NAME``) was started with."""
    from .runs.lifecycle import requested_config

    return requested_config(run_path, FitConfig, RESUME_CONFIG, "fit")


def _fit(c: FitConfig, run: Any, train: Dataset | None, val: Dataset | None, test: Dataset | None,
         progress: bool, cache: FeatureCache | None) -> FitResult:
    from .evaluation.report import write_run_report
    from .runs.store import run_info, save_model_files, write_json

    started = time.time()
    seed_everything(c.seed)
    set_threads(c.num_threads)
    splits = load_splits(c, train, val, test)
    labels, (ytr, yva, yte) = encode_targets(c, splits)
    log.info("data: train %d, val %d, test %d (%s)", len(splits.train), len(splits.val), len(splits.test),
             splits.note or "given")
    choice = ranking = None
    if c.backbone == "auto":  # choose by transferability ranking on the training split (transferkit.ranking)
        from .strategies.auto import choose_for_fit

        cache = cache if cache is not None else FeatureCache(engine=c.engine)
        choice, ranking = choose_for_fit(splits.train, c.candidates, c.strategy, c.image_size, c.max_length,
                                         c.seed, cache, progress)
        log.info("auto: %s", choice.reason)
    strategy = choice.fit_strategy if choice is not None else c.strategy
    own_backbone = traits(strategy).own_backbone
    if own_backbone is not None:  # e.g. classical: its own featuriser for this data, not a transfer backbone
        own = own_backbone(splits.train.modality)
        if c.backbone.split(":", 1)[0] != own.split(":", 1)[0]:  # keep a featuriser given explicitly
            c = dataclasses.replace(c, backbone=own)
    elif choice is not None:
        c = dataclasses.replace(c, backbone=choice.backbone)
    backbone = create_backbone(c.backbone, pretrained=True, image_size=c.image_size, max_length=c.max_length,
                               pooling=c.pooling, seed=c.seed if c.backbone.startswith("scratch:") else None)
    if c.pooling is not None and backbone.meta.extra.get("pooling") != c.pooling:
        got = backbone.meta.extra.get("pooling")
        raise ConfigError(f"Backbone '{c.backbone}' cannot pool by {c.pooling!r}: "
                          + (f"its pooling is fixed to {got!r} (a fitted run)" if got else "it has no pooling "
                             "option (Hugging Face text encoders have: hf:, packaged:minilm-l6)")
                          + ". Drop --pooling or choose such a backbone.")
    if splits.train.modality != backbone.meta.modality:
        raise DataError(f"Backbone '{c.backbone}' takes {backbone.meta.modality}s but the training data "
                        f"'{splits.train.origin}' are {splits.train.modality}s. Choose a matching backbone "
                        "(see `transferkit info`).")
    t_in = time.perf_counter()
    tr_in, va_in, te_in = (Inputs(d, backbone) for d in (splits.train, splits.val, splits.test))
    prep_seconds = time.perf_counter() - t_in
    n_out = len(labels["classes"]) if c.task == "classification" else 1
    cw = None
    if c.class_weights and c.task == "classification":
        counts = np.bincount(ytr, minlength=n_out).astype(np.float64)
        cw = len(ytr) / (n_out * np.maximum(counts, 1))
    ctx = FitContext(c, backbone, tr_in, ytr, va_in, yva, n_out, cw,
                     (run.dir / "tensorboard") if run else None, cache or FeatureCache(), progress,
                     test=te_in)
    if run is not None:
        ctx.checkpoint = CheckpointSpec(run.checkpoints, c.training.checkpoint_every, run.resumed, _fingerprint(c),
                                        run.resume_hint)
    ctx.cache.engine, n_records = c.engine, len(ctx.cache.engine_records)  # engine for cache misses
    t0 = time.perf_counter()
    if choice is not None:
        from .strategies.auto import run_choice

        result = run_choice(ctx, choice, ranking, STRATEGIES)
    else:
        result = STRATEGIES.get(c.strategy)(ctx)
    c = ctx.config  # "auto" resolved to the strategy (and freeze) it chose; saved so the run reproduces
    # settings left to the backbone family (lr) are saved as the numbers used
    c = dataclasses.replace(c, training=resolve_training(c.training, backbone.meta, c.strategy))
    fit_seconds = time.perf_counter() - t0
    model = result.model
    if run is not None and not is_main_process():  # rank 0 evaluates and writes the run
        return FitResult(None, model, labels, {}, {}, result.details)
    if labels["task"] == "regression":
        model.target_mean.fill_(labels["target_mean"])
        model.target_std.fill_(labels["target_std"])
    bs = max(c.training.batch_size, 64)
    test_eval = evaluate_model(model, te_in, yte, labels, bs, result.outputs.get("test"))
    val_eval = evaluate_model(model, va_in, yva, labels, bs, result.outputs.get("val"))
    details = {**result.details, "fit_seconds": fit_seconds, "preprocess_seconds": prep_seconds,
               "split_note": splits.note,
               "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
               "data_issues": {k: v for k, v in splits.train.counts.items() if v},
               "lineage": getattr(backbone, "lineage", [])}
    if len(ctx.cache.engine_records) > n_records:  # engine, parity with eager, fallback (probe / lp-ft)
        details["extraction_engine"] = ctx.cache.engine_records[n_records:]
    log.info("test metrics: %s", {k: v for k, v in test_eval.metrics.items() if isinstance(v, float)})
    fr = FitResult(None, model, labels, test_eval.metrics, val_eval.metrics, details)
    if run is None:
        return fr
    save_model_files(run.dir, model, c, labels)
    for name, write in result.files.items():  # the strategy's own files (inside the run folder: sealed with it)
        write(run.dir / name)
    write_json(run.dir / "metrics.json", {"test": test_eval.metrics, "val": val_eval.metrics,
                                             "details": details})
    if result.history is not None:
        write_json(run.dir / "history.json", result.history.epochs)
    write_run_report(run.dir, c, model.backbone.meta, labels, test_eval, result.history, details)
    head = "linear" if isinstance(model.head, torch.nn.Linear) else "mlp"
    write_json(run.dir / "run.json", run_info(c, started, {"name": run.final.name, "head": head,
                                                              "lineage": details["lineage"]}))
    return fr

