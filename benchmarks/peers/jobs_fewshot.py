"""Few-shot text jobs on SpamAssassin: transferkit's ``contrastive`` strategy (SetFit's idea, cheaper), on the
same seeded splits and k-shot training sets as SetFit (``jobs_text.setfit_job``)."""
from __future__ import annotations

import inspect
from typing import Any

from common import Timer, kshot, macro_f1, spam  # noqa: F401 (macro_f1: same metric as the other jobs)

MAX_LENGTH = 128


def _spam(quick: bool, seed: int) -> dict[str, Any]:
    """This seed's test / val / pool split (``common.spam`` before it took a seed: its fixed seed-0 split)."""
    if "seed" in inspect.signature(spam).parameters:
        return spam(quick, seed=seed)
    return spam(quick)


def tk_contrastive(quick: bool, threads: int, k: int, seed: int = 0, overrides: dict[str, Any] | None = None,
                   **knobs: Any) -> dict[str, Any]:
    """``transferkit.fit`` with strategy ``contrastive`` on k labelled e-mails per class (seed: the split, the
    k-shot draw and the fit's seed).

    ``overrides`` / ``knobs`` (ablations): upper-case names are module constants of
    :mod:`transferkit.strategies.contrastive` (``LOSS``, ``TUNE_LAYERS``, ``STEPS_PER_EPOCH``, ``TEMPERATURE``);
    the others are FitConfig settings (``lr``, ``epochs``, ``batch_size``, ...)."""
    knobs = {**(overrides or {}), **knobs}
    import tempfile
    import time

    from transferkit import FitConfig, fit
    from transferkit.data import from_arrays
    from transferkit.strategies import FeatureCache
    from transferkit.strategies import contrastive as ct

    consts = {k_: v for k_, v in knobs.items() if k_.isupper()}
    training = {k_: v for k_, v in knobs.items() if not k_.isupper()}
    saved = {k_: getattr(ct, k_) for k_ in consts}
    d = _spam(quick, seed)
    tr = kshot(d["y"], d["pool"], k, seed)
    part = {name: from_arrays([d["texts"][i] for i in idx], d["y"][idx]) for name, idx in
            (("train", tr), ("val", d["val"]), ("test", d["test"]))}
    cfg = FitConfig.from_dict(dict(backbone="packaged:minilm-l6", strategy="contrastive", max_length=MAX_LENGTH,
                                   seed=seed, num_threads=threads, **training))
    try:
        for k_, v in consts.items():
            setattr(ct, k_, v)
        c0 = time.process_time()
        with Timer() as t, tempfile.TemporaryDirectory() as tmp:
            r = fit(cfg, train=part["train"], val=part["val"], test=part["test"], save=False, progress=False,
                    cache=FeatureCache(tmp))
        cpu = time.process_time() - c0
    finally:
        for k_, v in saved.items():
            setattr(ct, k_, v)
    det = r.details
    return {"metric": r.metrics["macro_f1"], "val_metric": r.val_metrics["macro_f1"], "compute_s": t.seconds,
            "cpu_s": cpu, "train_s": det.get("train_seconds"), "n_train": len(tr),
            "settings": {**det.get("contrastive", {}), "k": k, "seed": seed, "max_length": MAX_LENGTH,
                         "hybrid_weight": det.get("weight"), "chosen_C": det.get("chosen_C")}}
