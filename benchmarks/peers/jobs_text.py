"""Text jobs on SpamAssassin: transferkit vs Hugging Face Trainer, TF-IDF + LR and SetFit (same splits)."""
from __future__ import annotations

from typing import Any

from common import Timer, finetune_subset, kshot, macro_f1, spam

MAX_LENGTH = 128
# the same learning rate in every layer as the Trainer (layer_decay 1: no layer-wise decay), so that the two
# recipes differ only in engineering
FT = {"batch": 16, "epochs": 1, "lr": 2e-4, "warmup": 0.1, "weight_decay": 0.01, "layer_decay": 1.0}


def _n_train(quick: bool) -> int:
    return 96 if quick else 480


def _ks(quick: bool, full_data: bool = False) -> list:
    """Label budgets per class; the TF-IDF peer also fits on the whole pool ('all')."""
    return ([8, 64] if quick else [8, 16, 64, 256]) + (["all"] if full_data else [])


# -- 1. fine-tuning MiniLM: transferkit fit vs Hugging Face Trainer --------------------------------------
def tk_finetune(quick: bool, threads: int, seed: int = 0, overrides: dict | None = None,
                precision: str = "fp32") -> dict[str, Any]:
    from transferkit import FitConfig, fit
    from transferkit.data import from_arrays
    from transferkit.strategies import FeatureCache

    d = spam(quick, seed)
    tr = finetune_subset(d, _n_train(quick), seed)
    part = {k: from_arrays([d["texts"][i] for i in idx], d["y"][idx]) for k, idx in
            (("train", tr), ("val", d["val"]), ("test", d["test"]))}
    cfg = FitConfig.from_dict({**dict(backbone="packaged:minilm-l6", strategy="fine-tune", max_length=MAX_LENGTH,
                    batch_size=FT["batch"], epochs=FT["epochs"], lr=FT["lr"], warmup=FT["warmup"],
                    weight_decay=FT["weight_decay"], layer_decay=FT["layer_decay"], min_steps=0, seed=seed,
                    num_threads=threads, precision=precision), **(overrides or {})})
    import tempfile

    with Timer() as t, tempfile.TemporaryDirectory() as tmp:
        r = fit(cfg, train=part["train"], val=part["val"], test=part["test"], save=False, progress=False,
                cache=FeatureCache(tmp))
    return {"metric": r.metrics["macro_f1"], "compute_s": t.seconds, "train_s": r.details["fit_seconds"],
            "throughput": len(tr) * FT["epochs"] / r.details["fit_seconds"], "throughput_unit": "train ex/s",
            "n_train": len(tr), "settings": {**FT, "max_length": MAX_LENGTH, "training": cfg.training.to_dict(),
                                             "precision": precision, "overrides": overrides or {}}}


def hf_trainer(quick: bool, threads: int, seed: int = 0, overrides: dict | None = None,
               bf16: bool = False) -> dict[str, Any]:
    """What the Hugging Face text-classification tutorial does, on the same e-mails and budget
    (``bf16``: the Trainer's own ``bf16=True`` mixed precision on CPU)."""
    import tempfile

    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from transferkit.backbones.packaged import minilm_dir

    d = spam(quick, seed)
    tr = finetune_subset(d, _n_train(quick), seed)
    path = str(minilm_dir())
    with Timer() as t:
        set_seed(seed)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

        def ds(idx):
            enc = tok([d["texts"][i] for i in idx], truncation=True, max_length=MAX_LENGTH)
            return Dataset.from_dict({**enc, "labels": d["y"][idx].tolist()})

        train, val, test = ds(tr), ds(d["val"]), ds(d["test"])
        with tempfile.TemporaryDirectory() as tmp:
            steps = -(-len(tr) // FT["batch"]) * FT["epochs"]
            args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=FT["batch"],
                                     per_device_eval_batch_size=64, num_train_epochs=FT["epochs"],
                                     learning_rate=FT["lr"], warmup_steps=int(round(FT["warmup"] * steps)),
                                     weight_decay=FT["weight_decay"], eval_strategy="epoch", save_strategy="no",
                                     report_to=[], logging_strategy="no", seed=seed, use_cpu=True,
                                     dataloader_num_workers=0, disable_tqdm=True, bf16=bf16)
            trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                              data_collator=DataCollatorWithPadding(tok))
            out = trainer.train()
            pred = trainer.predict(test)
    y_pred = np.argmax(pred.predictions, axis=1)
    return {"metric": macro_f1(d["y"][d["test"]], y_pred), "compute_s": t.seconds,
            "train_s": out.metrics["train_runtime"],
            "throughput": len(tr) * FT["epochs"] / out.metrics["train_runtime"], "throughput_unit": "train ex/s",
            "n_train": len(tr), "settings": {**FT, "max_length": MAX_LENGTH, "torch_threads": torch.get_num_threads(),
                                             "precision": "bf16" if bf16 else "fp32"}}


# -- 2. TF-IDF (word 1-2 grams) + logistic regression, C chosen on the same validation set ----------------
def tfidf_lr(quick: bool, threads: int, seed: int = 0, overrides: dict | None = None) -> dict[str, Any]:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    d = spam(quick, seed)
    texts, y = d["texts"], d["y"]
    per_k: dict[str, Any] = {}
    with Timer() as t:
        for k in _ks(quick, full_data=True):
            tr = kshot(y, d["pool"], k, seed)
            with Timer() as tk:
                vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
                xtr = vec.fit_transform([texts[i] for i in tr])
                xva, xte = (vec.transform([texts[i] for i in idx]) for idx in (d["val"], d["test"]))
                best = None
                for C in (0.01, 0.1, 1.0, 10.0, 100.0):
                    m = LogisticRegression(C=C, max_iter=2000).fit(xtr, y[tr])
                    s = macro_f1(y[d["val"]], m.predict(xva))
                    if best is None or s > best[0]:
                        best = (s, C, m)
                f1 = macro_f1(y[d["test"]], best[2].predict(xte))
            per_k[str(k)] = {"metric": f1, "seconds": tk.seconds, "n_train": int(len(tr)), "C": best[1]}
    n_scored = sum(v["n_train"] for v in per_k.values()) + len(per_k) * (len(d["val"]) + len(d["test"]))
    return {"metric": per_k[str(_ks(quick)[0])]["metric"], "per_k": per_k, "compute_s": t.seconds,
            "throughput": n_scored / t.seconds, "throughput_unit": "e-mails featurised/s",
            "n_train": int(np.sum([v["n_train"] for v in per_k.values()]))}


# -- transferkit's text strategies at each k: hybrid (TF-IDF + embeddings) and the linear probe -----------
def _best_text_strategy() -> str:
    from transferkit.strategies import STRATEGIES

    if "hybrid" in STRATEGIES:
        return "hybrid"
    try:
        from transferkit.strategies.hybrid import fit_hybrid  # noqa: F401
        return "hybrid"
    except ImportError:
        return "linear-probe"


def tk_kshot(quick: bool, threads: int, seed: int = 0, overrides: dict | None = None, ks: list | None = None,
             engine: str = "onnx-int8") -> dict[str, Any]:
    """Frozen MiniLM features through the feature cache (a fresh one: extraction is paid here), then the
    hybrid head and the linear probe at every k, like `transferkit compare` does."""
    import tempfile

    import numpy as np

    from transferkit.backbones import create_backbone
    from transferkit.data import from_arrays
    from transferkit.features.inputs import Inputs
    from transferkit.strategies import FeatureCache
    from transferkit.strategies.linear_probe import fit_probe

    d = spam(quick, seed)
    texts, y = d["texts"], d["y"]
    ks = ks or _ks(quick)
    best = _best_text_strategy()
    per_k: dict[str, Any] = {}
    with Timer() as t, tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp, engine=engine)
        bb = create_backbone("packaged:minilm-l6", max_length=MAX_LENGTH)
        trains = {str(k): kshot(y, d["pool"], k, seed) for k in ks}
        need = np.unique(np.concatenate([d["val"], d["test"], *trains.values()]))
        with Timer() as te:
            ds_all = from_arrays([texts[i] for i in need], y[need])
            feats = cache.get_or_compute(bb, Inputs(ds_all, bb), 32, progress=False)
        row = {int(j): r for r, j in enumerate(need)}

        def part(idx):
            sel = np.asarray([row[int(i)] for i in idx])
            return from_arrays([texts[i] for i in idx], y[idx]), feats[sel]

        (val, fva), (test, fte) = part(d["val"]), part(d["test"])
        for k, tr in trains.items():
            train, ftr = part(tr)
            with Timer() as tp:
                coef, icpt, scaler, _ = fit_probe(ftr, y[tr], fva, y[d["val"]], "classification",
                                                  [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0], 2, False, seed)
                lp = macro_f1(y[d["test"]], np.argmax(scaler.transform(fte) @ coef.T + icpt, 1))
            res = {"linear-probe": lp, "n_train": int(len(tr)), "probe_s": tp.seconds}
            if best == "hybrid":
                from transferkit.strategies.hybrid import fit_hybrid

                with Timer() as th:
                    m = fit_hybrid(train, ftr, y[tr], val, fva, y[d["val"]], "classification", 2, seed)
                    res["hybrid"] = macro_f1(y[d["test"]], np.argmax(m.outputs(test, fte), 1))
                res["hybrid_s"] = th.seconds
                res["hybrid_weight"] = m.details.get("weight")
            res["metric"] = res.get(best, lp)
            per_k[k] = res
    first = str(ks[0])
    return {"metric": per_k[first]["metric"], "strategy": best, "per_k": per_k, "compute_s": t.seconds,
            "extract_s": te.seconds, "n_extracted": int(len(need)), "throughput": len(need) / te.seconds,
            "throughput_unit": "e-mails embedded/s", "engine": cache.engine_records[-1] if cache.engine_records
            else {"engine": engine}}


def tk_fewshot(quick: bool, threads: int, k: int, seed: int = 0, overrides: dict | None = None) -> dict[str, Any]:
    return tk_kshot(quick, threads, seed, overrides, ks=[k])


# -- 3. SetFit with the packaged MiniLM body ------------------------------------------------------------
SETFIT = {"batch_size": 16, "num_epochs": 1, "num_iterations": 20, "max_steps": 40, "body_learning_rate": 2e-5}


def setfit_job(quick: bool, threads: int, k: int, seed: int = 0, overrides: dict | None = None) -> dict[str, Any]:
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from transferkit.backbones.packaged import minilm_dir

    d = spam(quick, seed)
    texts, y = d["texts"], d["y"]
    tr = kshot(y, d["pool"], k, seed)
    steps = 10 if quick else SETFIT["max_steps"]
    with Timer() as t:
        model = SetFitModel.from_pretrained(str(minilm_dir()))
        model.model_body.max_seq_length = MAX_LENGTH
        train = Dataset.from_dict({"text": [texts[i] for i in tr], "label": y[tr].tolist()})
        args = TrainingArguments(batch_size=SETFIT["batch_size"], num_epochs=SETFIT["num_epochs"],
                                 num_iterations=SETFIT["num_iterations"], max_steps=steps,
                                 body_learning_rate=SETFIT["body_learning_rate"], seed=seed, report_to="none",
                                 show_progress_bar=False, save_strategy="no", eval_strategy="no")
        trainer = Trainer(model=model, args=args, train_dataset=train)
        with Timer() as ttrain:
            trainer.train()
        with Timer() as tpred:
            pred = model.predict([texts[i] for i in d["test"]], batch_size=32, show_progress_bar=False)
    pred = np.asarray(pred)
    return {"metric": macro_f1(y[d["test"]], pred), "compute_s": t.seconds, "train_s": ttrain.seconds,
            "predict_s": tpred.seconds, "throughput": len(d["test"]) / tpred.seconds,
            "throughput_unit": "test e-mails predicted/s", "n_train": int(len(tr)),
            "settings": {**SETFIT, "max_steps": steps, "max_length": MAX_LENGTH, "k": k}}
