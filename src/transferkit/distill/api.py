"""``distill``: a fitted teacher run -> a smaller student run on the same task, trained on the teacher's soft targets
(computed once) mixed with the hard labels, next to the same student trained without distillation."""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RUN_PLACEMENT
from ..data import Dataset
from ..engine.loop import CheckpointSpec, History
from ..engine.model import TransferModel
from ..errors import DataError
from ..features.cache import FeatureCache
from .config import TEACHER_COPY, DistillConfig

log = logging.getLogger("transferkit")

RESUME_CONFIG = "distill.yaml"  # the requested config of a run in progress, beside its checkpoints
DISTILL_KIND = "distill"        # run.json "kind" of a distillation run (a classifier: loads like a fit run)
PHASES = ("student", "no-distillation")


@dataclass
class DistillResult:
    run_dir: Path | None
    model: TransferModel               # the distilled student
    labels: dict[str, Any]             # the teacher's label map
    metrics: dict[str, Any]            # the student's test metrics
    comparison: dict[str, Any]         # teacher / student / no_distillation rows and their ratios
    details: dict[str, Any] = field(default_factory=dict)
    baseline: TransferModel | None = None  # the same student trained without distillation (``compare``)


def saved_config(run_path: str | Path) -> DistillConfig:
    """The config an interrupted distillation run at ``run_path`` (``runs/NAME``) was started with."""
    from ..runs.lifecycle import requested_config

    return requested_config(run_path, DistillConfig, RESUME_CONFIG, "distill")


def distill(config: DistillConfig, train: Dataset | None = None, unlabelled: Dataset | None = None,
            val: Dataset | None = None, test: Dataset | None = None, progress: bool = True, save: bool = True,
            cache: FeatureCache | None = None, resume: bool = False) -> DistillResult:
    """Distil ``config.teacher`` (a classification run) into ``config.student`` on the teacher's task.

    Args:
        config: teacher, student (a backbone spec, 'teacher', or ``student_layers`` of the teacher's encoder), loss
            settings (temperature, alpha, feature_loss), data paths and training settings.
        train, unlabelled, val, test: datasets overriding the config's paths (labels of ``unlabelled`` are dropped).
        progress: progress bars.
        save: write the run directory (``config.runs_dir / config.name``), loadable like a fit run.
        cache: where the teacher's logits (and features) are kept (default: the user feature cache).
        resume: continue an interrupted run of the same name (finished phases are read back, the running one
            continues from its latest checkpoint).

    Returns:
        A :class:`DistillResult`; ``comparison`` holds test macro-F1, parameters, file size and CPU latency of the
        teacher, the student and (``config.compare``) the student without distillation.

    Raises:
        ConfigError, DataError: bad settings, teacher, student or data (one-line messages), before any training.
    """
    c = config.validate()
    label = f"layers{c.student_layers}" if c.student_layers else (c.student or "").split(":", 1)[-1]
    name = c.name or f"distill-{label.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not save:
        return _distill(c, None, train, unlabelled, val, test, progress, cache)
    from ..distributed.ddp import is_main_process
    from ..runs.lifecycle import RunHandle, partial_dir, start_run

    if not is_main_process():  # a torchrun worker: it trains its share of every batch and writes nothing
        final = Path(c.runs_dir) / name
        return _distill(c, RunHandle(final, partial_dir(final), resume, "distill"), train, unlabelled, val, test,
                        False, cache)

    with start_run(c.runs_dir, name, overwrite=c.overwrite, resume=resume, log_file="distill.log",
                   verb="distill") as run:
        run.pin_config(c, RESUME_CONFIG)
        result = _distill(c, run, train, unlabelled, val, test, progress, cache)
    result.run_dir = run.final
    return result


def _phase(run: Any, name: str, model: TransferModel, fingerprint: dict[str, Any],
           train: Callable[[CheckpointSpec | None], History], every: int) -> tuple[History, float]:
    """Train one phase (or read it back when a resumed run finished it); returns its history and seconds."""
    from safetensors.torch import load_model, save_model

    from ..runs.lifecycle import finish_phase, finished_phase

    root = run.checkpoints / name if run is not None else None
    done = finished_phase(root) if root is not None and run.resumed else None
    if done is not None:
        load_model(model, str(done[0]), strict=True)
        h = done[1]
        return History(h["epochs"], h["best_epoch"], h["best_metric"], h["stopped_early"]), h["seconds"]
    spec = None if root is None else CheckpointSpec(root, every, run.resumed, fingerprint, run.resume_hint)
    t0 = time.perf_counter()
    hist = train(spec)
    seconds = time.perf_counter() - t0
    from ..distributed.ddp import is_main_process

    if root is not None and is_main_process():  # under torchrun rank 0 alone writes
        finish_phase(root, lambda path: save_model(model, str(path)),
                     {**dataclasses.asdict(hist), "seconds": seconds})
    return hist, seconds


def _distill(c: DistillConfig, run: Any, train: Dataset | None, unlabelled: Dataset | None, val: Dataset | None,
             test: Dataset | None, progress: bool, cache: FeatureCache | None) -> DistillResult:
    from ..backbones.recipes import resolve_training
    from ..engine.accelerator import seed_everything, set_threads
    from ..engine.loop import train_model
    from ..features.identity import weights_hash
    from ..features.inputs import Inputs
    from .data import join, load_data
    from .objective import DistillObjective, TransferTargets
    from .students import build_student, check_layers, copies_teacher_head
    from .teacher import load_teacher, teacher_outputs

    started = time.time()
    seed_everything(c.seed)
    set_threads(c.num_threads)
    # -- every check first: teacher, data, student (one-line errors before any work) -------------------------
    teacher = load_teacher(c.teacher)
    if c.student_layers is not None:
        check_layers(teacher, c.student_layers)
    data = load_data(c, teacher, train, unlabelled, val, test)
    torch.manual_seed(c.seed)
    backbone = build_student(c.student, teacher, c.student_layers, c.image_size, c.max_length, c.seed)
    if backbone.meta.modality != teacher.modality:
        raise DataError(f"Student '{c.student}' takes {backbone.meta.modality}s but teacher '{teacher.path}' and the "
                        f"data are {teacher.modality}s. Choose a {teacher.modality} student (see `transferkit info`).")
    labels = {"task": "classification", **teacher.label_map.to_dict()}
    n_out = len(teacher.label_map)
    from_teacher = copies_teacher_head(c.student, c.student_layers)
    head = teacher.info.get("head", teacher.config.head) if from_teacher else "linear"
    torch.manual_seed(c.seed)
    student = TransferModel(backbone, n_out, head)
    if from_teacher:
        student.head.load_state_dict(teacher.model.head.state_dict())
    baseline = copy.deepcopy(student) if c.compare else None  # the same initialisation
    settings = resolve_training(c.training, backbone.meta)
    # -- the teacher's outputs on the transfer set, once ----------------------------------------------------------
    transfer = join(data.splits.train, data.unlabelled)
    cache = cache if cache is not None else FeatureCache()
    hits = cache.hits
    t0 = time.perf_counter()
    t_logits, t_feats = teacher_outputs(teacher, transfer, cache, c.feature_loss > 0, progress)
    teacher_seconds = time.perf_counter() - t0
    targets = TransferTargets(torch.as_tensor(data.transfer_labels), torch.from_numpy(t_logits),
                              None if t_feats is None else torch.from_numpy(t_feats))
    s_in, va_in, te_in = (Inputs(d, backbone) for d in (transfer, data.splits.val, data.splits.test))
    fingerprint = {k: v for k, v in c.to_dict().items() if k not in RUN_PLACEMENT}
    fingerprint["data"] = [transfer.content_hash(), data.splits.val.content_hash(), data.splits.test.content_hash()]
    fingerprint["teacher_weights"] = weights_hash(teacher.model)
    log.info("distill %s -> %s: transfer set %d labelled + %d unlabelled; T=%g alpha=%g feature_loss=%g",
             teacher.path, backbone.meta.spec, len(data.splits.train), len(transfer) - len(data.splits.train),
             c.temperature, c.alpha, c.feature_loss)
    # -- training: the distilled student, then (compare) the same student without distillation ------------------
    torch.manual_seed(c.seed)
    t_dim = 0 if t_feats is None else t_feats.shape[1]
    objective = DistillObjective(c.temperature, c.alpha, c.feature_loss, backbone.meta.feature_dim, t_dim,
                                 settings.label_smoothing)
    hist, student_seconds = _phase(run, PHASES[0], student, fingerprint, lambda ck: train_model(
        student, s_in, data.transfer_labels, va_in, data.y_val, settings, seed=c.seed, progress=progress,
        desc="distill", checkpoint=ck, objective=objective, targets=targets), c.training.checkpoint_every)
    base_hist, base_seconds = None, 0.0
    if baseline is not None:
        tr_in = Inputs(data.splits.train, baseline.backbone)
        base_hist, base_seconds = _phase(run, PHASES[1], baseline, fingerprint, lambda ck: train_model(
            baseline, tr_in, data.y_train, va_in, data.y_val, settings, seed=c.seed, progress=progress,
            desc="no distillation", checkpoint=ck), c.training.checkpoint_every)
    # -- evaluation and footprint ------------------------------------------------------------------------------------
    from ..distributed.ddp import is_main_process

    if not is_main_process():  # rank 0 alone evaluates, times (on a machine the others no longer load) and writes
        return DistillResult(None, student, labels, {}, {}, {}, baseline)
    comparison, student_eval = _compare(teacher, student, baseline, te_in, data, labels)
    details = {"student": _describe_student(c, backbone, teacher),
               "sizes": {"train": len(data.splits.train), "val": len(data.splits.val), "test": len(data.splits.test),
                         "labelled": len(data.splits.train), "unlabelled": len(transfer) - len(data.splits.train)},
               "split_note": data.splits.note, "lr": settings.lr,
               "teacher_outputs": {"cache_hits": cache.hits - hits, "seconds": teacher_seconds,
                                   "features": t_feats is not None},
               "seconds": {"teacher_outputs": teacher_seconds, "student": student_seconds,
                           "no_distillation": base_seconds},
               "best_epoch": hist.best_epoch, "stopped_early": hist.stopped_early,
               "lineage": _lineage(teacher, backbone, from_teacher)}
    result = DistillResult(None, student, labels, student_eval.metrics, comparison, details, baseline)
    log.info("distill: teacher macro-F1 %.4f, student %.4f%s", comparison["teacher"]["macro_f1"],
             comparison["student"]["macro_f1"], "" if baseline is None else
             f", without distillation {comparison['no_distillation']['macro_f1']:.4f}")
    if run is not None:
        _write_run(run, c, result, student_eval, va_in, data, dataclasses.replace(c, training=settings), hist,
                   base_hist, started)
    return result


def _compare(teacher: Any, student: TransferModel, baseline: TransferModel | None, te_in: Any, data: Any,
             labels: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Test metrics and footprint of teacher, student and (when trained) the student without distillation."""
    from ..evaluation.evaluate import evaluate_model
    from ..features.inputs import Inputs
    from .measure import footprint

    def row(ev: Any, fp: dict[str, Any]) -> dict[str, Any]:
        return {"macro_f1": ev.metrics["macro_f1"], "accuracy": ev.metrics["accuracy"], **fp}

    y = data.y_test
    t_in = Inputs(data.splits.test, teacher.model.backbone)
    t_eval = evaluate_model(teacher.model, t_in, y, labels)
    s_eval = evaluate_model(student, te_in, y, labels)
    t_fp, s_fp = footprint(teacher.model, t_in), footprint(student, te_in)
    meta = teacher.model.backbone.meta
    out: dict[str, Any] = {"teacher": {"run": str(teacher.path), "backbone": meta.spec,
                                       "strategy": teacher.config.strategy, **row(t_eval, t_fp)},
                           "student": {"backbone": student.backbone.meta.spec, **row(s_eval, s_fp)},
                           "no_distillation": None}
    if baseline is not None:  # same architecture as the student: same parameters, size and latency
        b_eval = evaluate_model(baseline, te_in, y, labels)
        out["no_distillation"] = {"backbone": baseline.backbone.meta.spec, **row(b_eval, s_fp)}

    def lat(r: dict[str, Any], k: str) -> float:
        return r["latency"][k]["seconds"] if k in r["latency"] else float("nan")

    t, s = out["teacher"], out["student"]
    out["ratios"] = {"macro_f1_of_teacher": s["macro_f1"] / t["macro_f1"] if t["macro_f1"] else float("nan"),
                     "parameters_of_teacher": s["parameters"] / max(1, t["parameters"]),
                     "file_bytes_of_teacher": s["file_bytes"] / max(1, t["file_bytes"]),
                     "speedup_b1": lat(t, "b1") / lat(s, "b1"), "speedup_b32": lat(t, "b32") / lat(s, "b32"),
                     "gain_over_no_distillation": None if baseline is None else
                     s["macro_f1"] - out["no_distillation"]["macro_f1"]}
    return out, s_eval


def _describe_student(c: DistillConfig, backbone: Any, teacher: Any) -> dict[str, Any]:
    meta = backbone.meta
    if c.student_layers is not None:
        cut = meta.extra["truncated"]
        how = (f"the first {cut['layers']} of the teacher's {cut['of']} transformer layers (and its embeddings and "
               "head), initialised from the teacher's fine-tuned weights")
    elif c.student == TEACHER_COPY:
        how = "a copy of the teacher (architecture, fine-tuned weights and head)"
    else:
        how = (f"{meta.source}, {'pretrained' if meta.pretrained else 'random init'}, {meta.feature_dim}-d features, "
               "new linear head")
    return {"spec": meta.spec, "requested": c.student, "layers": c.student_layers, "how": how}


def _lineage(teacher: Any, backbone: Any, from_teacher: bool) -> list[dict[str, Any]]:
    """The teacher first; then where the student's weights came from (the teacher's own lineage for a cut or copied
    teacher, the student backbone's lineage for a ``run:`` spec)."""
    first = {"run": str(teacher.path), "kind": "teacher", "backbone": teacher.config.backbone,
             "strategy": f"teacher ({teacher.config.strategy})", "train": teacher.config.train}
    rest = teacher.info.get("lineage", []) if from_teacher else getattr(backbone, "lineage", [])
    return [first, *list(rest)]


def _write_run(run: Any, c: DistillConfig, result: DistillResult, student_eval: Any, va_in: Any, data: Any,
               resolved: DistillConfig, hist: History, base_hist: History | None, started: float) -> None:
    from ..evaluation.evaluate import evaluate_model
    from ..runs.store import run_info, save_model_files, write_json
    from .report import write_report

    model = result.model
    head = "linear" if isinstance(model.head, torch.nn.Linear) else "mlp"
    view = resolved.fit_view(model.backbone.meta.spec, head)  # the student as a fit run (what load_run reads)
    save_model_files(run.dir, model, view, result.labels)
    (run.dir / RESUME_CONFIG).write_text(c.to_yaml(), encoding="utf-8")
    val_eval = evaluate_model(model, va_in, data.y_val, result.labels)
    write_json(run.dir / "metrics.json", {"test": student_eval.metrics, "val": val_eval.metrics,
                                          "distill": result.comparison, "details": result.details})
    write_json(run.dir / "history.json", {"student": hist.epochs,
                                          "no_distillation": base_hist.epochs if base_hist is not None else None})
    write_report(run.dir, run.final.name, c, result, hist, base_hist)
    d = result.details
    write_json(run.dir / "run.json", run_info(view, started, {
        "name": run.final.name, "kind": DISTILL_KIND, "head": head, "lineage": d["lineage"],
        "teacher": result.comparison["teacher"]["run"], "student": d["student"],
        "distill": {"temperature": c.temperature, "alpha": c.alpha, "feature_loss": c.feature_loss,
                    "unlabelled": d["sizes"]["unlabelled"], "compare": c.compare}}))


__all__ = ["DISTILL_KIND", "DistillResult", "distill", "saved_config"]
