"""Continued pretraining: does masked-LM pretraining of MiniLM on the (unlabelled) SpamAssassin training e-mails help
the downstream spam classifier?

1. ``transferkit pretrain`` (Python API) of packaged:minilm-l6 on the e-mails (subject + newline + body) that are in
   the training pool of *every* seed's split (so never on any seed's validation or test e-mails), labels dropped,
   for a capped budget (default: 300 steps or 8 minutes, whichever comes first; batch 16, length 128, lr 5e-5).
2. For each seed, the same cells with backbone ``run:<pretrained>`` and ``packaged:minilm-l6``, on the same split
   (``benchmarks/peers/common.py`` ``spam(quick, seed)``; few-shot sets from ``kshot``, the fine-tuning set from
   ``finetune_subset``): few-shot k = 8 and 64 per class with strategy hybrid and linear-probe, and a full
   fine-tune (480 e-mails, 1 epoch, batch 16, lr 2e-4, layer_decay 1.0, min_steps 0).
3. Per cell: test macro-F1 of both sides and the mean paired difference (pretrained - base) over seeds with a 95%
   t-interval.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_pretrain.py [--quick] [--seeds 0,1,2] [--steps 300]
       [--minutes 8] [--threads 1]
Writes the section between <!-- pretrain:start --> and <!-- pretrain:end --> of BENCHMARKS.md (with --quick: of
benchmarks/out/pretrain-quick/BENCHMARKS-quick.md instead, so a smoke run never lands in BENCHMARKS.md) and raw JSON
into benchmarks/out/pretrain/ (the pretraining run under runs/, one JSON per (cell, side, seed) under cells/: an
interrupted benchmark continues where it stopped; an interrupted pretraining resumes from its checkpoint).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402  (benchmarks/peers/common.py: the shared SpamAssassin splits)
from bench_common import log, t_interval, write_json  # noqa: E402
import markdown_blocks  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "pretrain"
BASE = "packaged:minilm-l6"
RUN_NAME = "minilm-spamassassin-mlm"
FT = {"batch_size": 16, "epochs": 1, "lr": 2e-4, "layer_decay": 1.0, "min_steps": 0, "warmup": 0.1,
      "weight_decay": 0.01}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    return {"quick": quick, "seeds": [int(s) for s in args.seeds.split(",") if s.strip()],
            "ks": [8] if quick else [8, 64], "strategies": ["hybrid", "linear-probe"],
            "n_finetune": 96 if quick else 480, "max_length": 64 if quick else 128,
            "pretrain": {"max_steps": args.steps, "max_minutes": args.minutes, "batch_size": 16, "lr": 5e-5,
                         "max_length": 64 if quick else 128, "corpus_cap": 200 if quick else None}}


# -- 1. pretraining --------------------------------------------------------------------------------------------
def corpus(s: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The e-mails in every seed's training pool (none in any seed's validation or test set), without labels."""
    import numpy as np

    splits = [common.spam(s["quick"], seed) for seed in s["seeds"]]
    texts = splits[0]["texts"]
    held = set()
    for d in splits:
        held |= set(map(int, d["val"])) | set(map(int, d["test"]))
    pool = sorted(set(map(int, splits[0]["pool"])).intersection(*(set(map(int, d["pool"])) for d in splits[1:])))
    assert not held & set(pool)
    if s["pretrain"]["corpus_cap"]:
        pool = sorted(np.random.default_rng(0).permutation(pool)[:s["pretrain"]["corpus_cap"]].tolist())
    return [texts[i] for i in pool], {"emails": len(pool), "excluded_val_test": len(held), "total": len(texts)}


def pretrained_run(s: dict[str, Any], threads: int) -> tuple[Path, dict[str, Any]]:
    from transferkit.data import from_arrays
    from transferkit.pretraining import PretrainConfig, pretrain
    from transferkit.runs.lifecycle import partial_dir, resumable

    texts, about = corpus(s)
    p = s["pretrain"]
    cfg = PretrainConfig.from_dict(dict(backbone=BASE, objective="mlm", max_steps=p["max_steps"],
                                        max_minutes=p["max_minutes"], batch_size=p["batch_size"], lr=p["lr"],
                                        max_length=p["max_length"], seed=0, num_threads=threads,
                                        checkpoint_every=25, runs_dir=str(OUT / "runs"), name=RUN_NAME))
    data = from_arrays(texts)
    data.origin = "spamassassin pool (all seeds' training e-mails, unlabelled)"
    want = {"config": {k: v for k, v in cfg.to_dict().items() if k not in ("runs_dir", "name", "overwrite")},
            "fingerprint": data.content_hash()}
    run = OUT / "runs" / RUN_NAME
    meta = OUT / "pretrain.json"
    if (run / "run.json").exists() and meta.exists() and json.loads(meta.read_text())["want"] == want:
        log(f"pretraining: reusing {run.relative_to(ROOT)}")
        return run, json.loads(meta.read_text())
    resume = resumable(run) is not None and (partial_dir(run) / "checkpoint" / "pretrain.yaml").exists()
    log(f"pretraining {BASE} on {about['emails']} unlabelled e-mails ({about['excluded_val_test']} val/test e-mails "
        f"of the seeds excluded): up to {p['max_steps']} steps / {p['max_minutes']} min"
        + (" (resuming)" if resume else ""))
    if not resume:
        cfg = cfg.updated(overwrite=True)
    t0 = time.perf_counter()
    r = pretrain(cfg, data=data, progress=False, resume=resume)
    info = json.loads((r.run_dir / "run.json").read_text())
    record = {"want": want, "corpus": about, "created": info["created"], "steps": info["steps"],
              "stopped": info["stopped"],
              "seconds": time.perf_counter() - t0, "train_seconds": info["timing"]["train"],
              "final_loss": info["final_loss"], "heldout": {k: info["heldout"][k] for k in ("before", "after")},
              "loss_curve": info["loss_curve"], "data_fingerprint": info["data"]["fingerprint"],
              "heldout_texts": info["data"]["heldout"]}
    write_json(meta, record)
    ho = record["heldout"]
    log(f"pretraining done: {info['steps']} steps ({info['stopped']}), {record['train_seconds'] / 60:.1f} min; "
        f"held-out masked-token accuracy {ho['before']['accuracy']:.4f} -> {ho['after']['accuracy']:.4f}")
    return run, record


# -- 2. cells ----------------------------------------------------------------------------------------------------
def cells(s: dict[str, Any]) -> list[dict[str, Any]]:
    out = [{"id": f"{strategy}-k{k}", "kind": "fewshot", "k": k, "strategy": strategy}
           for k in s["ks"] for strategy in s["strategies"]]
    out.append({"id": f"fine-tune-n{s['n_finetune']}", "kind": "finetune", "n": s["n_finetune"],
                "strategy": "fine-tune"})
    return out


def run_cell(cell: dict[str, Any], backbone: str, seed: int, s: dict[str, Any], threads: int,
             cache_dir: Path) -> dict[str, Any]:
    import numpy as np

    from transferkit.config import FitConfig
    from transferkit.data import from_arrays
    from transferkit.features import FeatureCache
    from transferkit.pipeline import fit

    d = common.spam(s["quick"], seed)
    tr = (common.kshot(d["y"], d["pool"], cell["k"], seed) if cell["kind"] == "fewshot"
          else common.finetune_subset(d, cell["n"], seed))
    part = {k: from_arrays([d["texts"][i] for i in idx], d["y"][idx]) for k, idx in
            (("train", tr), ("val", d["val"]), ("test", d["test"]))}
    extra = FT if cell["kind"] == "finetune" else {}
    cfg = FitConfig.from_dict(dict(backbone=backbone, strategy=cell["strategy"], max_length=s["max_length"],
                                   seed=seed, num_threads=threads, **extra))
    t0 = time.perf_counter()
    r = fit(cfg, train=part["train"], val=part["val"], test=part["test"], save=False, progress=False,
            cache=FeatureCache(cache_dir))
    return {"macro_f1": float(r.metrics["macro_f1"]), "accuracy": float(r.metrics["accuracy"]),
            "seconds": time.perf_counter() - t0, "n_train": int(len(tr)), "n_val": int(len(d["val"])),
            "n_test": int(len(d["test"])), "train_hash": hashlib.sha256(np.asarray(tr).tobytes()).hexdigest()[:12],
            "settings": {"training": cfg.training.to_dict(), "max_length": cfg.max_length}}


# -- 3. report ---------------------------------------------------------------------------------------------------
def markdown(s: dict[str, Any], record: dict[str, Any], rows: list[dict[str, Any]], cmd: str) -> str:
    p, ho = s["pretrain"], record["heldout"]
    lines = ["## Continued pretraining (masked LM on the task's unlabelled e-mails)", "",
             f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}, 1 torch thread, machine shared with other jobs). "
             f"`transferkit pretrain` of `{BASE}` on the {record['corpus']['emails']} SpamAssassin e-mails that are in "
             f"the training pool of every seed ({record['corpus']['excluded_val_test']} validation/test e-mails of "
             f"seeds {', '.join(map(str, s['seeds']))} excluded), labels dropped: {record['steps']} steps "
             f"({record['stopped']}; budget {p['max_steps']} steps / {p['max_minutes']} min), batch "
             f"{p['batch_size']}, length {p['max_length']}, lr {p['lr']:g}, {record['train_seconds'] / 60:.1f} min. "
             f"Held-out ({record['heldout_texts']} e-mails) masked-token accuracy {ho['before']['accuracy']:.3f} -> "
             f"{ho['after']['accuracy']:.3f}, loss {ho['before']['loss']:.2f} -> {ho['after']['loss']:.2f} (the "
             "packaged MiniLM has no MLM head: its transform starts untrained, so 'before' is a fresh head).", "",
             "Then the same cells with backbone `run:<pretrained>` and with the base MiniLM, on each seed's split "
             "(`benchmarks/peers/common.py`); test macro-F1, mean over seeds; diff = mean paired difference "
             "(pretrained - base) with its 95% t-interval over seeds.", "",
             "| cell | base | pretrained | diff [95% CI] | seeds |", "|---|---|---|---|---|"]
    for r in rows:
        ci = f" ± {r['half']:.4f}" if r["half"] is not None else ""
        lines.append(f"| {r['cell']} | {r['base']:.4f} | {r['pretrained']:.4f} | {r['diff']:+.4f}{ci} | {r['n']} |")
    lines += ["", f"Few-shot: k labelled e-mails per class (`kshot`), strategy as named, length {s['max_length']}; "
              f"fine-tune: {s['n_finetune']} e-mails (`finetune_subset`), 1 epoch, batch 16, lr 2e-4, layer_decay "
              f"1.0, min_steps 0. Raw results: `benchmarks/out/{OUT.name}/`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, k=8, 96-e-mail fine-tune, tiny budget")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0,1,2; quick: 0)")
    ap.add_argument("--steps", type=int, default=None, help="pretraining step budget (default: 300; quick: 4)")
    ap.add_argument("--minutes", type=float, default=None, help="pretraining time budget (default: 8; quick: 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = ap.parse_args()
    args.seeds = args.seeds or ("0" if args.quick else "0,1,2")
    args.steps = args.steps or (4 if args.quick else 300)
    args.minutes = args.minutes or (2.0 if args.quick else 8.0)
    common.pin_threads(args.threads)
    global OUT
    if args.quick:
        OUT = OUT.parent / "pretrain-quick"
        markdown_blocks.BENCHMARKS_MD = OUT / "BENCHMARKS-quick.md"
    s = settings(args)
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "settings.json", s)
    run, record = pretrained_run(s, args.threads)
    pre = f"run:{Path(os.path.relpath(run)).as_posix()}"  # relative to the working directory: no machine paths
    sides = {"pretrained": pre, "base": BASE}
    key_pre = f"{record['data_fingerprint']}-{record['steps']}-{record['created']}"  # a new pretraining: new cells
    results: dict[str, dict[str, dict[int, float]]] = {}
    for seed in s["seeds"]:
        for cell in cells(s):
            for side, backbone in sides.items():
                f = OUT / "cells" / f"{cell['id']}-{side}-seed{seed}.json"
                want = {"cell": cell, "side": side, "seed": seed, "max_length": s["max_length"], "quick": s["quick"],
                        "pretrained": key_pre if side == "pretrained" else None}
                if f.exists() and json.loads(f.read_text()).get("want") == want:
                    res = json.loads(f.read_text())
                else:
                    log(f"seed {seed} {cell['id']} {side} ({backbone}) ...")
                    res = {"want": want, "backbone": backbone,
                           **run_cell(cell, backbone, seed, s, args.threads, OUT / "feature-cache")}
                    write_json(f, res)
                    log(f"seed {seed} {cell['id']} {side}: macro-F1 {res['macro_f1']:.4f} ({res['seconds']:.0f} s)")
                results.setdefault(cell["id"], {}).setdefault(side, {})[seed] = res["macro_f1"]
    rows = []
    for cell in cells(s):
        r = results[cell["id"]]
        seeds = sorted(set(r["pretrained"]) & set(r["base"]))
        diffs = [r["pretrained"][k] - r["base"][k] for k in seeds]
        mean, half = t_interval(diffs)
        rows.append({"cell": cell["id"], "n": len(seeds), "diff": mean, "half": half, "diffs": diffs,
                     "base": sum(r["base"][k] for k in seeds) / len(seeds),
                     "pretrained": sum(r["pretrained"][k] for k in seeds) / len(seeds)})
    write_json(OUT / "summary.json", {"settings": s, "pretraining": {k: v for k, v in record.items() if k != "want"},
                                      "rows": rows})
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_pretrain.py" + (" --quick" if args.quick else "")
    text = markdown(s, record, rows, cmd)
    markdown_blocks.update_section(text, "pretrain")
    print(text, flush=True)
    log(f"wrote {markdown_blocks.BENCHMARKS_MD.relative_to(ROOT)} (section 'pretrain') and {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
