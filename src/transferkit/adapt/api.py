"""``adapt``: labelled source + unlabelled target -> adapted model, next to the source-only baseline,
with an unsupervised choice of checkpoint / trade-off, proxy A-distances, t-SNE plots and a run directory."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbones import create_backbone
from ..data import Columns, Dataset, LabelMap, load_path, stratified_split
from ..engine.model import TransferModel
from ..engine.loop import CheckpointSpec
from ..errors import ConfigError, DataError
from ..evaluation.metrics import classification_metrics
from ..features.inputs import Inputs
from .a_distance import proxy_a_distance
from .adabn import require_batchnorm
from .config import AdaptConfig
from .features import FeatureBottleneck
from .methods import MethodContext, build_components, parse_method
from .selection import choose, oracle
from .trainer import (AdaptSettings, DomainData, FeatureInputs, features_and_logits, posthoc_candidates,
                      train_candidates)

log = logging.getLogger("transferkit")


@dataclass
class Baseline:
    """The source-only run's checkpoints; pass it to another ``adapt`` call with the same data, backbone,
    seed and training settings to skip retraining it."""

    key: str
    candidates: list[dict[str, Any]]
    history: list[dict[str, float]]


@dataclass
class AdaptResult:
    run_dir: Path | None
    model: TransferModel
    labels: dict[str, Any]
    metrics: dict[str, Any]
    candidates: list[dict[str, Any]]
    baseline: Baseline
    details: dict[str, Any] = field(default_factory=dict)


def _load(c: AdaptConfig, source: Dataset | None, target: Dataset | None,
          target_test: Dataset | None) -> tuple[Dataset, Dataset, Dataset | None]:
    cols = Columns(text=c.text_column, image=c.image_column, label=c.label_column, id=c.id_column)
    if source is None:
        if c.source is None:
            raise DataError("No source data: pass --source PATH (labelled image folder or table).")
        source = load_path(c.source, cols)
    if target is None:
        if c.target is None:
            raise DataError("No target data: pass --target PATH (unlabelled image folder or table).")
        target = load_path(c.target, cols, labelled=False)
    if target_test is None and c.target_test:
        target_test = load_path(c.target_test, cols)
    if source.y is None:
        raise DataError(f"Source data '{source.origin}' has no labels; adaptation needs a labelled source.")
    if target_test is not None and target_test.y is None:
        raise DataError(f"Target test data '{target_test.origin}' has no labels; they are needed to report "
                        "target accuracy. Drop --target-test to adapt without target evaluation.")
    target = Dataset(target.modality, target.inputs, None, target.ids, target.origin, target.value_max,
                     dict(target.counts))  # target labels, if any, are never seen
    for what, ds in (("target", target), ("target test", target_test)):
        if ds is not None and ds.modality != source.modality:
            raise DataError(f"The {what} data ('{ds.origin}') are {ds.modality}s but the source data are "
                            f"{source.modality}s.")
    if len(target) < 4:
        raise DataError(f"Target data '{target.origin}' has {len(target)} example(s); adaptation needs at least 4.")
    return source, target, target_test


def baseline_key(c: AdaptConfig, source: Dataset, target: Dataset, target_test: Dataset | None) -> str:
    parts = {k: getattr(c, k) for k in ("backbone", "run", "seed", "val_fraction", "image_size", "max_length",
                                        "features", "bottleneck_dim", "checkpoints")}
    parts.update({k: getattr(c.training, k) for k in AdaptConfig.TRAINING_FLAGS if k != "checkpoint_every"})
    parts["data"] = [source.content_hash(), target.content_hash(), target_test.content_hash() if target_test else None]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _public(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k not in ("state", "test_probs")} for c in cands]


def adapt(config: AdaptConfig, source: Dataset | None = None, target: Dataset | None = None,
          target_test: Dataset | None = None, progress: bool = True, save: bool = True,
          baseline: Baseline | None = None, cache: Any = None, resume: bool = False) -> AdaptResult:
    """Adapt a backbone from labelled ``source`` to unlabelled ``target`` data (or the paths in ``config``).

    Args:
        config: method, backbone or run, training and selection settings.
        source / target / target_test: datasets overriding the config's paths; target labels are dropped.
        progress: progress bars.
        save: write the run directory (``config.runs_dir / config.name``).
        baseline: a :class:`Baseline` from an earlier call with the same data and settings (skips retraining).
        cache: a ``FeatureCache`` for frozen mode (default: the user cache).
        resume: continue an interrupted run of the same name from its checkpoints (finished phases are read back).

    Returns:
        An :class:`AdaptResult`; ``metrics['adapted']`` and ``metrics['source_only']`` hold target test metrics.

    Raises:
        ConfigError, DataError: bad settings or data (one-line messages).
    """
    c = config.validate()
    name = c.name or f"adapt-{c.method.replace('+', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not save:
        return _adapt(c, None, source, target, target_test, progress, baseline, cache)
    from ..distributed.ddp import is_main_process
    from ..runs.lifecycle import RunHandle, partial_dir, start_run

    if not is_main_process():  # a torchrun worker: it trains its share of every batch and writes nothing
        final = Path(c.runs_dir) / name
        return _adapt(c, RunHandle(final, partial_dir(final), resume, "adapt"), source, target, target_test,
                      False, baseline, cache)

    with start_run(c.runs_dir, name, overwrite=c.overwrite, resume=resume, log_file="adapt.log",
                   verb="adapt") as run:
        run.pin_config(c, RESUME_CONFIG)
        result = _adapt(c, run, source, target, target_test, progress, baseline, cache)
    result.run_dir = run.final
    return result


RESUME_CONFIG = "adapt.yaml"  # the requested config of a run in progress, beside its checkpoints


def _adapt(c: AdaptConfig, run: Any, source: Dataset | None, target: Dataset | None,
           target_test: Dataset | None, progress: bool, baseline: Baseline | None, cache: Any) -> AdaptResult:
    from ..engine.accelerator import seed_everything, set_threads

    from ..distributed.ddp import is_main_process

    run_dir = run.dir if run is not None and is_main_process() else None  # rank 0 alone writes the run
    parts = parse_method(c.method)
    started = time.time()
    seed_everything(c.seed)
    set_threads(c.num_threads)
    src, tgt, tst = _load(c, source, target, target_test)
    lm = LabelMap.fit(src.y)
    if len(lm) < 2:
        raise DataError(f"Source data '{src.origin}' has only one class ({lm.classes[0]!r}); need at least 2.")
    y_src = lm.encode(src.y, "source data")
    y_tst = lm.encode(tst.y, "target test data") if tst is not None else None
    tr_idx, va_idx = stratified_split(src.y, (c.val_fraction,), c.seed)
    spec = c.backbone_spec
    backbone = create_backbone(spec, image_size=c.image_size, max_length=c.max_length,
                               seed=c.seed if spec.startswith("scratch:") else None)
    if backbone.meta.modality != src.modality:
        raise DataError(f"Backbone '{spec}' takes {backbone.meta.modality}s but the source data "
                        f"'{src.origin}' are {src.modality}s. Choose a matching backbone (see `transferkit info`).")
    n_cls = len(lm)
    t_prep = time.perf_counter()
    if c.features == "end-to-end":
        model = TransferModel(backbone, n_cls)
        if "adabn" in parts:
            require_batchnorm(model, f"backbone '{spec}'")
        ins = [Inputs(d, backbone) for d in (src.subset(tr_idx), src.subset(va_idx), tgt)]
        test_in = Inputs(tst, backbone) if tst is not None else None
    else:
        if "adabn" in parts:
            raise ConfigError("Method 'adabn' re-estimates BatchNorm statistics of the network being trained; "
                              f"with --features frozen that is an MLP bottleneck without BatchNorm (backbone "
                              f"'{spec}' stays frozen), so it would change nothing. Use --features end-to-end "
                              "with a BatchNorm backbone such as scratch:cnn, or another method.")
        from ..features.cache import FeatureCache

        fc = cache or FeatureCache()
        feats = [fc.get_or_compute(backbone, Inputs(d, backbone), desc=f"features {what}", progress=progress)
                 for what, d in (("source", src), ("target", tgt))]
        ins = [FeatureInputs(feats[0][tr_idx]), FeatureInputs(feats[0][va_idx]), FeatureInputs(feats[1])]
        test_in = None
        if tst is not None:
            test_in = FeatureInputs(fc.get_or_compute(backbone, Inputs(tst, backbone), desc="features test",
                                                      progress=progress))
        torch.manual_seed(c.seed)
        model = TransferModel(FeatureBottleneck(backbone.meta, c.bottleneck_dim), n_cls)
    prep_seconds = time.perf_counter() - t_prep
    data = DomainData(ins[0], y_src[tr_idx], ins[1], y_src[va_idx], ins[2], n_cls, test_in, y_tst)
    settings = AdaptSettings(c.training, c.checkpoints, c.seed)
    init_state = copy.deepcopy(model.state_dict())
    key = baseline_key(c, src, tgt, tst)

    def phase_checkpoint(phase: str) -> CheckpointSpec | None:
        if run is None:
            return None
        return CheckpointSpec(run.checkpoints / f"phase-{phase.replace('+', '_')}", c.training.checkpoint_every, run.resumed,
                              {"key": key}, run.resume_hint)
    t0 = time.perf_counter()
    if baseline is not None and baseline.key != key:
        raise ConfigError("The baseline passed to adapt() came from different data or training settings; "
                          "drop it (it is retrained) or reuse it only with identical settings.")
    reused = baseline is not None
    if baseline is None:
        base_c, base_h = train_candidates(model, [], data, settings, 0.0, progress, "source-only",
                                          phase_checkpoint("source-only"))
        baseline = Baseline(key, base_c, base_h)
    baseline_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx = MethodContext(model.backbone.meta.feature_dim, n_cls, c.threshold, c.class_balanced,
                        c.mcc_temperature, c.seed)
    if parts == ["source-only"]:
        cands, hist = baseline.candidates, baseline.history
    elif parts == ["adabn"]:
        cands = posthoc_candidates(model, baseline.candidates, data, c.seed)
        hist = [{"trade_off": x["trade_off"], "step": x["step"], **x["scores"],
                 **{f"target_test_{k}": v for k, v in (x["oracle"] or {}).items()}} for x in cands]
    else:
        cands, hist = [], []
        for w in c.grid:
            model.load_state_dict(init_state)
            torch.manual_seed(c.seed)
            comps = build_components(c.method, ctx)
            cw, hw = train_candidates(model, comps, data, settings, w, progress, f"{c.method} w={w:g}",
                                      phase_checkpoint(f"{c.method}-w{w:g}"))
            cands += cw
            hist += hw
    method_seconds = time.perf_counter() - t0
    i_sel, i_base = choose(cands, c.select), choose(baseline.candidates, c.select)
    i_orc, i_orc_base = oracle(cands), oracle(baseline.candidates)
    model.load_state_dict(cands[i_sel]["state"])
    model.eval()
    base_model = copy.deepcopy(model)
    base_model.load_state_dict(baseline.candidates[i_base]["state"])
    base_model.eval()
    labels = {"task": "classification", **lm.to_dict()}
    metrics: dict[str, Any] = {"method": c.method, "select": c.select}
    if tst is not None:
        metrics["adapted"] = classification_metrics(y_tst, cands[i_sel]["test_probs"], lm.classes)
        metrics["source_only"] = classification_metrics(y_tst, baseline.candidates[i_base]["test_probs"],
                                                        lm.classes)
        metrics["oracle"] = {"adapted": cands[i_orc]["oracle"],
                             "source_only": baseline.candidates[i_orc_base]["oracle"]}
    where = ("trade_off", "step")
    metrics["selection"] = {"chosen": {k: cands[i_sel][k] for k in where},
                            "chosen_source_only": {k: baseline.candidates[i_base][k] for k in where},
                            "oracle": None if i_orc is None else {k: cands[i_orc][k] for k in where},
                            "scores": cands[i_sel]["scores"]}
    t0 = time.perf_counter()
    s_idx, t_idx = data.score_indices(c.seed)
    f_before = [features_and_logits(base_model, d, i) for d, i in ((data.source, s_idx), (data.target, t_idx))]
    f_after = [features_and_logits(model, d, i) for d, i in ((data.source, s_idx), (data.target, t_idx))]
    metrics["a_distance"] = {"before": proxy_a_distance(f_before[0][0], f_before[1][0], c.seed),
                             "after": proxy_a_distance(f_after[0][0], f_after[1][0], c.seed)}
    details = {"sizes": {"source_train": len(tr_idx), "source_val": len(va_idx), "target": len(tgt),
                         "target_test": len(tst) if tst is not None else 0},
               "seconds": {"preprocess": prep_seconds, "source_only": baseline_seconds, "method": method_seconds},
               "baseline_reused": reused, "backbone": spec, "model_backbone": model.backbone.meta.spec,
               "lineage": getattr(backbone, "lineage", [])}
    result = AdaptResult(None, model, labels, metrics, _public(cands), baseline, details)
    log.info("adapt %s: %s", c.method, {k: metrics[k]["accuracy"] for k in ("adapted", "source_only")
                                        if k in metrics})
    if run_dir is None:
        return result
    from .report import write_run

    write_run(run_dir, c, result, data, base_model, hist, started)
    details["seconds"]["report"] = time.perf_counter() - t0
    return result
