"""fit: data -> splits -> backbone -> strategy -> evaluation -> run directory. The spine of the CLI and API."""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import create_backbone
from .config import FitConfig
from .data import Columns, Dataset, LabelMap, load_path, stratified_split
from .engine.inputs import Inputs
from .engine.loop import predict_outputs
from .engine.model import TransferModel
from .errors import DataError
from .evaluation.metrics import classification_metrics, regression_metrics, softmax
from .strategies import STRATEGIES, FeatureCache, FitContext

log = logging.getLogger("transferkit")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(n: int | None) -> None:
    torch.set_num_threads(int(n or os.cpu_count() or 1))


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
class Evaluation:
    metrics: dict[str, Any]
    outputs: np.ndarray
    y_true: np.ndarray


def evaluate_model(model: TransferModel, inputs: Inputs, y_enc: np.ndarray, labels: dict[str, Any],
                   batch_size: int = 64, outputs: np.ndarray | None = None) -> Evaluation:
    """Metrics of ``model`` on ``inputs`` (or of precomputed head ``outputs`` for the same inputs)."""
    out = predict_outputs(model, inputs, batch_size) if outputs is None else outputs
    if labels["task"] == "regression":
        pred = out[:, 0] * labels["target_std"] + labels["target_mean"]
        y = y_enc * labels["target_std"] + labels["target_mean"]
        return Evaluation(regression_metrics(y, pred), pred, y)
    return Evaluation(classification_metrics(y_enc, softmax(out), labels["classes"]), softmax(out), y_enc)


@dataclass
class FitResult:
    run_dir: Path | None
    model: TransferModel | None  # None when strategy "auto" chose the classical baseline (then in details["auto"])
    labels: dict[str, Any]
    metrics: dict[str, Any]
    val_metrics: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    baseline: Any = None  # the fitted classical model (``outputs(dataset)`` -> logits) when "auto" chose it


def fit(config: FitConfig, train: Dataset | None = None, val: Dataset | None = None, test: Dataset | None = None,
        progress: bool = True, save: bool = True, cache: FeatureCache | None = None) -> FitResult:
    """Fit one configuration end to end and (by default) write its run directory."""
    from .evaluation.report import write_run_report
    from .runs.store import RunWriter, run_info, save_model_files, write_json

    c = config.validate()
    started = time.time()
    seed_everything(c.seed)
    set_threads(c.num_threads)
    name = c.name or f"{c.strategy}-{c.backbone.split(':', 1)[-1].replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    writer = RunWriter(c.runs_dir, name, c.overwrite) if save else None
    handler = None
    try:
        if writer is not None:
            handler = logging.FileHandler(writer.dir / "fit.log", encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        splits = load_splits(c, train, val, test)
        labels, (ytr, yva, yte) = encode_targets(c, splits)
        log.info("data: train %d, val %d, test %d (%s)", len(splits.train), len(splits.val), len(splits.test),
                 splits.note or "given")
        choice = ranking = None
        if c.backbone == "auto":  # choose by transferability ranking on the training split (transferkit.ranking)
            from .ranking.auto import choose_for_fit

            cache = cache if cache is not None else FeatureCache(engine=c.engine)
            choice, ranking = choose_for_fit(splits.train, c.candidates, c.strategy, c.image_size, c.max_length,
                                             c.seed, cache, progress)
            log.info("auto: %s", choice.reason)
            if choice.strategy == "classical":
                return _fit_classical_choice(c, splits, labels, (ytr, yva, yte), choice, ranking, writer, started,
                                             name)
            c = dataclasses.replace(c, backbone=choice.backbone)
        backbone = create_backbone(c.backbone, pretrained=True, image_size=c.image_size, max_length=c.max_length,
                                   seed=c.seed if c.backbone.startswith("scratch:") else None)
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
                         (writer.dir / "tensorboard") if writer else None, cache or FeatureCache(), progress,
                         test=te_in)
        ctx.cache.engine, n_records = c.engine, len(ctx.cache.engine_records)  # engine for cache misses
        t0 = time.perf_counter()
        if choice is not None:
            from .ranking.auto import run_choice

            result = run_choice(ctx, choice, ranking, dataclasses.replace)
        else:
            result = STRATEGIES.get(c.strategy)(ctx)
        c = ctx.config  # "auto" resolved to the strategy (and freeze) it chose; saved so the run reproduces
        fit_seconds = time.perf_counter() - t0
        model = result.model
        if labels["task"] == "regression":
            model.target_mean.fill_(labels["target_mean"])
            model.target_std.fill_(labels["target_std"])
        bs = max(c.batch_size, 64)
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
        if writer is None:
            return fr
        save_model_files(writer.dir, model, c, labels)
        write_json(writer.dir / "metrics.json", {"test": test_eval.metrics, "val": val_eval.metrics,
                                                 "details": details})
        if result.history is not None:
            write_json(writer.dir / "history.json", result.history.epochs)
        write_run_report(writer.dir, c, model.backbone.meta, labels, test_eval, result.history, details)
        head = "linear" if isinstance(model.head, torch.nn.Linear) else "mlp"
        write_json(writer.dir / "run.json", run_info(c, started, {"name": name, "head": head,
                                                                  "lineage": details["lineage"]}))
        log.removeHandler(handler)
        handler.close()
        handler = None
        fr.run_dir = writer.commit()
        return fr
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def _fit_classical_choice(c: FitConfig, splits: Splits, labels: dict[str, Any], ys: tuple[np.ndarray, ...],
                          choice: Any, ranking: Any, writer: Any, started: float, name: str) -> FitResult:
    """``auto`` chose the classical baseline: fit it on the same splits, evaluate, and write the report and metrics.
    The run holds no ``model.safetensors`` (the baseline is not a backbone + head), so it cannot be loaded later."""
    from .backbones.base import BackboneMeta
    from .evaluation.report import write_run_report
    from .runs.store import write_json
    from .strategies.classical import fit_classical

    ytr, yva, yte = ys
    n_out = len(labels["classes"])
    t0 = time.perf_counter()
    m = fit_classical(splits.train, ytr, splits.val, yva, c.task, n_out, c.seed)
    fit_seconds = time.perf_counter() - t0
    test_eval = evaluate_model(None, None, yte, labels, outputs=m.outputs(splits.test))
    val_eval = evaluate_model(None, None, yva, labels, outputs=m.outputs(splits.val))
    details = {"classical": m.details, "fit_seconds": fit_seconds, "preprocess_seconds": 0.0,
               "split_note": splits.note,
               "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
               "data_issues": {k: v for k, v in splits.train.counts.items() if v}, "lineage": [],
               "auto": {**choice.to_dict(), "freeze": 0, "ranking": ranking.table(), "ranking_metric": ranking.metric}}
    log.info("test metrics: %s", {k: v for k, v in test_eval.metrics.items() if isinstance(v, float)})
    fr = FitResult(None, None, labels, test_eval.metrics, val_eval.metrics, details, baseline=m)
    if writer is None:
        return fr
    meta = BackboneMeta(spec="classical", modality=splits.train.modality, feature_dim=0, source="classical",
                        pretrained=False, licence="n/a", extra={"features": m.details.get("features")})
    (writer.dir / "config.yaml").write_text(c.to_yaml(), encoding="utf-8")
    write_json(writer.dir / "labels.json", labels)
    write_json(writer.dir / "metrics.json", {"test": test_eval.metrics, "val": val_eval.metrics, "details": details})
    write_run_report(writer.dir, dataclasses.replace(c, strategy="classical"), meta, labels, test_eval, None, details)
    for h in list(log.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == writer.dir:
            log.removeHandler(h)
            h.close()
    fr.run_dir = writer.commit()
    return fr
