"""``pretrain``: continued masked-LM pretraining of a text encoder on unlabelled text -> a run whose encoder is a
backbone (``transferkit fit --backbone run:runs/NAME``)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backbones import create_backbone
from ..backbones.hf import HFTextBackbone
from ..config import RUN_PLACEMENT
from ..data import Dataset
from ..errors import ConfigError, DataError
from .config import PretrainConfig

log = logging.getLogger("transferkit")

RESUME_CONFIG = "pretrain.yaml"  # the requested config of a run in progress, beside its checkpoints


@dataclass
class PretrainResult:
    run_dir: Path | None
    encoder: HFTextBackbone          # the adapted encoder (a backbone: mean pooling, as the source)
    metrics: dict[str, Any]          # steps, loss, held-out masked-token loss / accuracy before and after
    details: dict[str, Any] = field(default_factory=dict)


def saved_config(run_path: str | Path) -> PretrainConfig:
    """The config an interrupted pretraining run at ``run_path`` (``runs/NAME``) was started with."""
    from ..runs.lifecycle import requested_config

    return requested_config(run_path, PretrainConfig, RESUME_CONFIG, "pretrain")


def pretrain(config: PretrainConfig, data: Dataset | None = None, progress: bool = True, save: bool = True,
             resume: bool = False) -> PretrainResult:
    """Continue pretraining ``config.backbone`` with masked language modelling on unlabelled text.

    Args:
        config: backbone, data path, objective, budgets (``max_steps``, ``max_minutes``) and training settings.
        data: unlabelled texts overriding ``config.data`` (labels, if any, are ignored).
        progress: progress bars.
        save: write the run directory (``config.runs_dir / config.name``): ``run.json``, ``pretrain.yaml``, the
            encoder and its tokenizer in Hugging Face format under ``encoder/``.
        resume: continue an interrupted run of the same name from its latest checkpoint (same settings).

    Returns:
        A :class:`PretrainResult`; ``metrics['heldout']`` holds the masked-token accuracy before and after.

    Raises:
        ConfigError, DataError: bad settings or data (one-line messages).
    """
    c = config.validate()
    name = c.name or f"pretrain-{c.objective}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not save:
        return _pretrain(c, None, data, progress)
    from ..distributed.ddp import is_main_process
    from ..runs.lifecycle import RunHandle, partial_dir, start_run

    if not is_main_process():  # a torchrun worker: it trains its share of every batch and writes nothing
        final = Path(c.runs_dir) / name
        return _pretrain(c, RunHandle(final, partial_dir(final), resume, "pretrain"), data, False)

    with start_run(c.runs_dir, name, overwrite=c.overwrite, resume=resume, log_file="pretrain.log",
                   verb="pretrain") as run:
        run.pin_config(c, RESUME_CONFIG)
        result = _pretrain(c, run, data, progress)
    result.run_dir = run.final
    return result


def _load(c: PretrainConfig, data: Dataset | None) -> Dataset:
    from .data import load_texts

    if data is None:
        if c.data is None:
            raise DataError("No data: pass --data PATH (unlabelled text: a table, a .txt file or a folder of .txt "
                            "files).")
        return load_texts(c.data, c.text_column)
    if data.modality != "text":
        raise DataError(f"The data given ('{data.origin}') are {data.modality}s; pretraining needs text.")
    texts = [t for t in data.inputs if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError(f"No text in '{data.origin}': " + (f"all {len(data)} texts are empty." if len(data) else
                                                            "it is empty."))
    return Dataset("text", texts, None, origin=data.origin, counts={"empty": len(data) - len(texts)})


def _pretrain(c: PretrainConfig, run: Any, data: Dataset | None, progress: bool) -> PretrainResult:
    from ..engine.accelerator import Accelerator, seed_everything, set_threads
    from ..engine.callbacks import Checkpoint, ProgressBar, TrainMode
    from ..engine.trainer import Trainer, warmup_cosine
    from . import mlm as M

    started = time.time()
    s = c.training
    seed_everything(c.seed)
    set_threads(c.num_threads)
    ds = _load(c, data)
    backbone = create_backbone(c.backbone, pretrained=True, max_length=c.max_length)
    if not isinstance(backbone, HFTextBackbone):
        raise ConfigError(f"Backbone '{c.backbone}' is not a Hugging Face text encoder ({backbone.meta.modality}, "
                          f"{type(backbone).__name__}); masked-LM pretraining needs one: packaged:minilm-l6, "
                          "hf:DIR, or run:PATH of a text run.")
    tok = backbone.preprocess.tokenizer
    corpus = M.tokenise(list(ds.inputs), tok, c.max_length, ds.origin)
    tr, ho = M.heldout_split(len(corpus), c.val_fraction, c.seed)
    train_ex, held_ex = [corpus.examples[i] for i in tr], [corpus.examples[i] for i in ho]
    model, head = M.build_mlm(backbone, c.seed)
    log.info("pretrain %s on %s: %d texts (%d held out, %d too short dropped); %s", c.objective, c.backbone,
             len(corpus), len(ho), corpus.dropped_short, head.describe())
    masks = M.MaskedBatches(tok, c.mask_prob, c.seed)
    acc = Accelerator(device=s.device, precision=s.precision, seed=c.seed)
    acc.prepare(model)
    device = acc.torch_device

    def evaluate() -> dict[str, float]:
        return M.evaluate_mlm(model, held_ex, masks, device)

    before = evaluate() if run is None or not run.resumed else None
    plan = M.MLMPlan(len(train_ex), s.batch_size, c.max_steps, c.seed)
    curve = M.LossCurve(max(1, c.max_steps // 100), c.eval_every, evaluate)
    budget = M.TimeBudget(c.max_minutes)
    callbacks: list[Any] = [TrainMode(), curve, budget,
                            ProgressBar("pretrain", min(len(train_ex), c.max_steps * s.batch_size), progress)]
    if run is not None:
        fingerprint = {k: v for k, v in c.to_dict().items() if k not in RUN_PLACEMENT}
        fingerprint["data"] = ds.content_hash()
        callbacks.append(Checkpoint(run.checkpoints, s.checkpoint_every, run.resumed, fingerprint))
    trainer = Trainer(model, M.MLMObjective(), plan, lambda item: M.collate_share(item, train_ex, masks),
                      M.param_groups(model, s.lr, s.weight_decay), epochs=plan.epochs, lr=s.lr,
                      weight_decay=s.weight_decay, grad_clip=s.grad_clip, schedule=warmup_cosine(s.warmup),
                      steps_per_epoch=plan.per_epoch, callbacks=callbacks, accelerator=acc)
    trainer.state.total_steps = c.max_steps  # the schedule runs over the step budget (the last epoch is cut)
    trainer.resume_hint = run.resume_hint if run is not None else None
    if run is not None and run.resumed:
        before = _saved_before(run.checkpoints)
    elif run is not None and acc.is_main:
        from ..runs.store import write_json

        write_json(run.checkpoints / "before.json", before)  # the held-out score of the starting weights
    t0 = time.perf_counter()
    st = trainer.fit()
    train_seconds = time.perf_counter() - t0
    model.eval()
    after = evaluate()
    M.copy_encoder_weights(model, backbone.model)
    backbone.eval()
    # a time budget stops every process together (the trainer's agreement), whichever one's clock ran out
    stopped = (f"time budget ({c.max_minutes:g} min) after step {st.step}" if st.step < c.max_steps
               else f"step budget ({c.max_steps} steps)")
    metrics = {"steps": st.step, "max_steps": c.max_steps, "stopped": stopped,
               "final_loss": curve.curve[-1]["loss"] if curve.curve else None,
               "curve": curve.curve, "heldout": {"before": before, "after": after, "curve": curve.evals}}
    details = {"backbone": c.backbone, "lineage": getattr(backbone, "lineage", []),
               "head": {"architecture": head.architecture, "init": head.head, "tied": head.tied,
                        "note": head.describe()},
               "data": {"path": c.data if data is None else ds.origin, "fingerprint": ds.content_hash(),
                        "texts": len(ds), "train": len(train_ex), "heldout": len(held_ex),
                        "dropped_short": corpus.dropped_short, "min_maskable_tokens": M.MIN_MASKABLE,
                        "maskable_tokens": corpus.tokens, **{k: v for k, v in ds.counts.items() if v}},
               "seconds": {"train": train_seconds, "elapsed_training_budget": budget.elapsed()}}
    log.info("pretrain done: %s; held-out masked-token accuracy %.4f -> %.4f", stopped,
             before["accuracy"] if before else float("nan"), after["accuracy"])
    result = PretrainResult(None, backbone, metrics, details)
    if run is not None and acc.is_main:  # under torchrun rank 0 alone writes the run
        _write_run(run, c, result, started)
    return result


def _saved_before(root: Path) -> dict[str, float] | None:
    import json

    p = root / "before.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def _write_run(run: Any, c: PretrainConfig, result: PretrainResult, started: float) -> None:
    from ..runs.store import ENCODER_DIR, PRETRAIN_KIND, environment, write_json

    enc = run.dir / ENCODER_DIR
    result.encoder.model.save_pretrained(str(enc))
    result.encoder.preprocess.tokenizer.save_pretrained(str(enc))
    (run.dir / RESUME_CONFIG).write_text(c.to_yaml(), encoding="utf-8")
    d, m = result.details, result.metrics
    info = {"status": "complete", "kind": PRETRAIN_KIND, "objective": c.objective, "name": run.final.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": time.time() - started, "seed": c.seed,
            "backbone": c.backbone, "lineage": d["lineage"], "encoder": ENCODER_DIR,
            "max_length": c.max_length, "mask_prob": c.mask_prob, "head": d["head"],
            **{k: m[k] for k in ("steps", "max_steps", "stopped", "final_loss")},
            "loss_curve": m["curve"], "heldout": m["heldout"], "data": d["data"],
            "training": {k: getattr(c.training, k) for k in PretrainConfig.TRAINING_FLAGS},
            "timing": d["seconds"], "environment": environment(),
            "use": f"transferkit fit --backbone run:{run.final.as_posix()} --train LABELLED ..."}
    write_json(run.dir / "run.json", info)
