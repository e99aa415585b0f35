"""LoRA vs full fine-tuning: quality, trainable parameters, memory, speed and checkpoint size.

Two tasks, each seed on the same split for every arm:

* text: SpamAssassin with packaged:minilm-l6 (``benchmarks/peers/common.py`` ``spam(quick, seed)``; training set from
  ``finetune_subset``: 480 e-mails, quick 96), length 128 (quick 64), 3 epochs (quick 1), batch 16;
* image: scikit-learn digits with packaged:efficientnet_lite0 at 64 px (quick 32; ``images("digits", quick, seed)``,
  a 70/15/15 split), 5 epochs (quick 2), batch 32.

Arms: ``fine-tune`` (all layers) and ``lora`` (default rank 8, alpha 16, dropout 0.05, targets per backbone family) at
the family's fine-tuning learning rate, ``lora-lr5x`` / ``lora-lr10x`` (five / ten times it: LoRA is usually run at
a higher rate; 5x is ``--strategy lora``'s default since this benchmark, marked "(default)"), and for the CNN
``lora-r4-pwl`` (+ ``-lr5x``): rank 4 on the projection convs and the head conv only, the smallest adapter set
(under 2% of the parameters).
Per cell (task, arm, seed): test macro-F1, the trainable share of the parameters the model uses, peak RSS of the
cell's own process, training throughput (training examples per second of training time, validation excluded),
``model.safetensors`` of the run (LoRA saves the merged model: the same size) and the size an adapter + head file
would have (fp32). Summary: mean over seeds and the mean paired difference (arm - fine-tune) with its 95% t-interval.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lora.py [--quick] [--seeds 0,1,2] [--threads 1]
Writes the section between <!-- lora:start --> and <!-- lora:end --> of BENCHMARKS.md (with --quick: of
benchmarks/out/lora-quick/BENCHMARKS-quick.md instead) and one JSON per cell under benchmarks/out/lora/cells/ (quick:
lora-quick/): each cell runs in its own process (so its peak RSS is its own), and a rerun skips cells already done.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402  (benchmarks/peers/common.py: the shared splits)
from bench_common import log, t_interval, write_json  # noqa: E402
import markdown_blocks  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "lora"
TASKS = {
    "spam-minilm": {"backbone": "packaged:minilm-l6", "modality": "text"},
    "digits-lite0": {"backbone": "packaged:efficientnet_lite0", "modality": "image"},
}
ARMS = {"fine-tune": {"strategy": "fine-tune", "lr_scale": 1.0}, "lora": {"strategy": "lora", "lr_scale": 1.0},
        "lora-lr5x": {"strategy": "lora", "lr_scale": 5.0},
        "lora-lr10x": {"strategy": "lora", "lr_scale": 10.0},
        # fewer, smaller adapters for CNNs: rank 4 on the projection (pointwise-linear) convs and the head conv only
        "lora-r4-pwl": {"strategy": "lora", "lr_scale": 1.0, "lora_r": 4, "lora_targets": r"conv_pwl$,conv_head$"},
        "lora-r4-pwl-lr5x": {"strategy": "lora", "lr_scale": 5.0, "lora_r": 4,
                             "lora_targets": r"conv_pwl$,conv_head$"}}
TASK_ARMS = {"spam-minilm": ["fine-tune", "lora", "lora-lr5x", "lora-lr10x"],
             "digits-lite0": ["fine-tune", "lora", "lora-lr5x", "lora-r4-pwl", "lora-r4-pwl-lr5x"]}


def is_default(arm: str) -> bool:
    """The arm is what ``--strategy lora`` does with no LoRA / lr option given."""
    from transferkit.backbones.recipes import STRATEGY_LR_SCALE

    a = ARMS[arm]
    return (a["strategy"] == "lora" and not any(k.startswith("lora_") for k in a)
            and a["lr_scale"] == STRATEGY_LR_SCALE["lora"].lr)
BASELINE = "fine-tune"


def settings(quick: bool, seeds: list[int]) -> dict[str, Any]:
    return {"quick": quick, "seeds": seeds,
            "spam-minilm": {"n_train": 96 if quick else 480, "max_length": 64 if quick else 128,
                            "training": {"epochs": 1 if quick else 3, "batch_size": 16, "min_steps": 0,
                                         "patience": 2}},
            "digits-lite0": {"image_size": 32 if quick else 64,
                             "training": {"epochs": 2 if quick else 5, "batch_size": 32, "patience": 2}}}


# -- one cell, in its own process -----------------------------------------------------------------------------------
def _data(task: str, seed: int, s: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train / val / test Datasets, FitConfig keys) of a task and seed."""
    from transferkit.data import from_arrays

    if task == "spam-minilm":
        d = common.spam(s["quick"], seed)
        tr = common.finetune_subset(d, s[task]["n_train"], seed)
        parts = {k: from_arrays([d["texts"][i] for i in idx], d["y"][idx])
                 for k, idx in (("train", tr), ("val", d["val"]), ("test", d["test"]))}
        return parts, {"max_length": s[task]["max_length"]}
    d = common.images("digits", s["quick"], seed)
    parts = {k: from_arrays(d["X"][d[k]], d["y"][d[k]], value_max=d["value_max"]) for k in ("train", "val", "test")}
    return parts, {"image_size": s[task]["image_size"]}


def _used_params(model) -> int:
    """Parameters the model uses (the backbone's layer groups and the head): what full fine-tuning trains."""
    params = dict(model.named_parameters())
    names = [f"backbone.{n}" for g in model.backbone.layer_groups() for n in g]
    return sum(params[n].numel() for n in names) + sum(p.numel() for n, p in params.items() if n.startswith("head."))


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    from transferkit.backbones import create_backbone
    from transferkit.backbones.recipes import resolve_training
    from transferkit.config import FitConfig, TrainConfig
    from transferkit.pipeline import fit

    task, arm, seed, s = spec["task"], spec["arm"], spec["seed"], spec["settings"]
    parts, keys = _data(task, seed, s)
    t = TASKS[task]
    meta = create_backbone(t["backbone"], **keys).meta
    lr = resolve_training(TrainConfig(), meta).lr * ARMS[arm]["lr_scale"]
    runs = Path(spec["runs_dir"])
    extra = {k: v for k, v in ARMS[arm].items() if k.startswith("lora_")}
    cfg = FitConfig.from_dict(dict(backbone=t["backbone"], strategy=ARMS[arm]["strategy"], seed=seed, lr=lr, **extra,
                                   num_threads=spec["threads"], checkpoint_every=0, runs_dir=str(runs),
                                   name=spec["id"], overwrite=True, **keys, **s[task]["training"]))
    t0 = time.perf_counter()
    r = fit(cfg, train=parts["train"], val=parts["val"], test=parts["test"], progress=False)
    seconds = time.perf_counter() - t0
    history = json.loads((r.run_dir / "history.json").read_text(encoding="utf-8"))
    train_s = sum(e["seconds"] for e in history)
    examples = sum(e["seconds"] * e["examples_per_s"] for e in history)
    used = _used_params(r.model)
    d = r.details
    trainable = d.get("trainable_params", used)  # fine-tune trains every used parameter
    total = d.get("total_params", used)
    out = {"macro_f1": float(r.metrics["macro_f1"]), "accuracy": float(r.metrics["accuracy"]), "lr": lr,
           "fit_seconds": seconds, "train_seconds": train_s, "train_examples_per_s": examples / max(train_s, 1e-9),
           "epochs_run": len(history), "best_epoch": d.get("best_epoch"), "trainable_params": trainable,
           "total_params": total, "trainable_pct": 100.0 * trainable / total,
           "run_model_bytes": (r.run_dir / "model.safetensors").stat().st_size,
           "adapter_head_bytes": 4 * trainable if "lora" in d else None,
           "n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_test": len(parts["test"]),
           "lora": d.get("lora")}
    shutil.rmtree(r.run_dir, ignore_errors=True)
    return out


def cell_main(path: Path) -> None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    common.pin_threads(spec["threads"])
    res = run_cell(spec)
    common.write_result(spec["result"], {"want": spec["want"], **res})


# -- orchestration and report ---------------------------------------------------------------------------------------
def run_all(s: dict[str, Any], threads: int) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    results: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for seed in s["seeds"]:
        for task in TASKS:
            for arm in TASK_ARMS[task]:
                cid = f"{task}-{arm}-seed{seed}"
                f = OUT / "cells" / f"{cid}.json"
                want = {"task": task, "arm": arm, "seed": seed, "settings": s[task], "quick": s["quick"],
                        "arm_settings": ARMS[arm]}
                if not (f.exists() and json.loads(f.read_text(encoding="utf-8")).get("want") == want):
                    log(f"{cid} ...")
                    spec_path = OUT / "cells" / f"{cid}.spec.json"
                    write_json(spec_path, {"id": cid, "task": task, "arm": arm, "seed": seed, "settings": s,
                                           "threads": threads, "want": want, "result": str(f),
                                           "runs_dir": str(OUT / "runs")})
                    subprocess.run([sys.executable, __file__, "--cell", str(spec_path)], check=True)
                    spec_path.unlink()
                res = json.loads(f.read_text(encoding="utf-8"))
                log(f"{cid}: macro-F1 {res['macro_f1']:.4f}, trainable {res['trainable_pct']:.2f}%, "
                    f"{res['train_examples_per_s']:.1f} ex/s, peak RSS {res['peak_rss_mb']:.0f} MB")
                results.setdefault(task, {}).setdefault(arm, {})[seed] = res
    return results


def summary(results: dict[str, dict[str, dict[int, dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for task, arms in results.items():
        base = arms[BASELINE]
        for arm, by_seed in arms.items():
            seeds = sorted(set(by_seed) & set(base))
            diff, half = t_interval([by_seed[k]["macro_f1"] - base[k]["macro_f1"] for k in seeds])
            mean = {key: sum(by_seed[k][key] for k in seeds) / len(seeds)
                    for key in ("macro_f1", "trainable_pct", "peak_rss_mb", "train_examples_per_s", "fit_seconds",
                                "epochs_run")}
            rows.append({"task": task, "arm": arm, "n": len(seeds), "macro_f1": mean["macro_f1"], "diff": diff,
                         "half": half, "trainable_pct": mean["trainable_pct"], "peak_rss_mb": mean["peak_rss_mb"],
                         "train_examples_per_s": mean["train_examples_per_s"], "fit_seconds": mean["fit_seconds"],
                         "epochs_run": mean["epochs_run"], "lr": by_seed[seeds[0]]["lr"],
                         "run_mb": by_seed[seeds[0]]["run_model_bytes"] / 2**20,
                         "adapter_mb": (by_seed[seeds[0]]["adapter_head_bytes"] or 0) / 2**20 or None,
                         "lora": by_seed[seeds[0]].get("lora")})
    return rows


def _plain(d: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in d.items())


def markdown(s: dict[str, Any], rows: list[dict[str, Any]], cmd: str) -> str:
    sp, dg = s["spam-minilm"], s["digits-lite0"]
    lines = ["## LoRA vs full fine-tuning (`--strategy lora`, PEFT)", "",
             f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}, 1 torch thread per cell, each cell in its own process, "
             "machine shared with other jobs). Test macro-F1, mean over seeds "
             f"{', '.join(map(str, s['seeds']))}; diff = mean paired difference (arm - fine-tune) over seeds with its "
             "95% t-interval. Trainable % = trained parameters / parameters the model uses (adapters included); "
             "throughput = training examples per second of training time; run = `model.safetensors` of the run "
             "(LoRA stores the merged model, so predict / export / serve need no PEFT); adapter + head = the fp32 "
             "size of the trained tensors alone (computed, not written).", "",
             "| task | arm | lr | LoRA r / layers | macro-F1 | diff vs fine-tune [95% CI] | trainable % | peak RSS MB | "
             "train ex/s | fit s | run MB | adapter + head MB | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = "—" if r["arm"] == BASELINE else f"{r['diff']:+.4f}" + (f" ± {r['half']:.4f}" if r["half"] is not None
                                                                      else "")
        ad = f"{r['adapter_mb']:.2f}" if r["adapter_mb"] else "—"
        rl = f"{r['lora']['r']} / {r['lora']['layers']}" if r["lora"] else "—"
        name = f"**{r['arm']}** (default)" if is_default(r["arm"]) else r["arm"]
        lines.append(f"| {r['task']} | {name} | {r['lr']:g} | {rl} | {r['macro_f1']:.4f} | {ci} | "
                     f"{r['trainable_pct']:.2f} | {r['peak_rss_mb']:.0f} | {r['train_examples_per_s']:.1f} | "
                     f"{r['fit_seconds']:.0f} | {r['run_mb']:.1f} | {ad} | {r['n']} |")
    lora = next((r["lora"] for r in rows if r["lora"]), None) or {}
    layers = {f"{r['task']} {r['arm']}": r["lora"] for r in rows if r["lora"]}
    lines += ["", f"spam-minilm: packaged:minilm-l6, {sp['n_train']} training e-mails (`finetune_subset`), length "
              f"{sp['max_length']}, {_plain(sp['training'])}; digits-lite0: packaged:efficientnet_lite0 at "
              f"{dg['image_size']} px on scikit-learn digits (70/15/15), {_plain(dg['training'])}. LoRA "
              f"alpha {lora.get('alpha')}, dropout {lora.get('dropout')}; adapted layers: "
              + "; ".join(f"{t}: {v['layers']} ({', '.join(v['layer_names'])})" for t, v in layers.items())
              + f". Raw results: `benchmarks/out/{OUT.name}/`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: seeds 0,1, small data, 1-2 epochs")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0,1,2; quick: 0,1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per cell (default: 1)")
    ap.add_argument("--cell", type=Path, default=None, help=argparse.SUPPRESS)  # internal: run one cell
    args = ap.parse_args()
    global OUT
    if args.cell is not None:
        cell_main(args.cell)
        return
    if args.quick:
        OUT = OUT.parent / "lora-quick"
        markdown_blocks.BENCHMARKS_MD = OUT / "BENCHMARKS-quick.md"
    seeds = [int(x) for x in (args.seeds or ("0,1" if args.quick else "0,1,2")).split(",") if x.strip()]
    s = settings(args.quick, seeds)
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "settings.json", s)
    rows = summary(run_all(s, args.threads))
    write_json(OUT / "summary.json", {"settings": s, "rows": rows})
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lora.py" + (" --quick" if args.quick else "")
    text = markdown(s, rows, cmd)
    markdown_blocks.update_section(text, "lora")
    print(text, flush=True)
    log(f"wrote {markdown_blocks.BENCHMARKS_MD.relative_to(ROOT)} (section 'lora') and {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
