"""Knowledge distillation: does ``transferkit distill`` give a student that keeps the teacher's quality at a fraction of
its latency, and does it beat the same student trained without distillation?

Text (SpamAssassin, ``benchmarks/peers/common.py`` ``spam(quick, seed)``): the teacher is packaged:minilm-l6
fine-tuned on 480 e-mails of the seed's pool (``finetune_subset``; 2 epochs, batch 16, lr 2e-4, length 128); the
student keeps its first 2 of 6 transformer layers (``--student-layers 2``, initialised from the teacher's weights),
trained (a) on the 480 labelled e-mails with the teacher's soft targets, (b) the same plus 1,000 unlabelled e-mails
of the pool (soft targets only), and (c) without distillation (plain fine-tune of the same cut student, same split,
seed and initialisation).
Images (MNIST, a fixed 3,000-image sample of mnist10k, or with --image-data digits scikit-learn's digits;
``common.images(name, quick, seed)``: 70/15/15): the teacher is packaged:efficientnet_lite0 fine-tuned at 64 px on
k = 20 labelled images per class of the training split; the student is scratch:cnn at 16 px, distilled with the
rest of the training split as unlabelled data, against the same CNN trained on the k labels alone. (On digits a
scratch CNN alone already beats the few-shot Lite0 teacher: 0.96 vs 0.88 macro-F1 at k = 10 in a quick run.)

Every cell: teacher and student defaults of ``transferkit distill`` (temperature 2, alpha 0.5, no feature loss), 1
torch thread; test macro-F1, parameters, weights file and CPU latency (batch 1 and 32) from the run's comparison;
paired differences over seeds with a 95% t-interval. Targets: student >= 97% of the teacher's macro-F1 at >= 2x
lower CPU latency, and better than the no-distillation student; images: >= +1 point over it.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_distill.py [--quick] [--seeds 0,1,2] [--threads 1]
       [--only text,images]
Writes the section between <!-- distill:start --> and <!-- distill:end --> of BENCHMARKS.md (with --quick: of
benchmarks/out/distill-quick/BENCHMARKS-quick.md instead, so a smoke run never lands in BENCHMARKS.md) and raw JSON
into benchmarks/out/distill/ (teacher runs under runs/, one JSON per (cell, seed) under cells/: an interrupted
benchmark continues where it stopped).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402  (benchmarks/peers/common.py: the shared SpamAssassin and image splits)
from bench_common import log, t_interval, write_json  # noqa: E402
import markdown_blocks  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "distill"
TEXT_TEACHER, IMAGE_TEACHER = "packaged:minilm-l6", "packaged:efficientnet_lite0"


def settings(args: argparse.Namespace) -> dict[str, Any]:
    q = args.quick
    return {"quick": q, "seeds": [int(s) for s in args.seeds.split(",") if s.strip()], "threads": args.threads,
            "text": {"n_train": 96 if q else 480, "n_unlabelled": 100 if q else 1000, "max_length": 64 if q else 128,
                     "layers": 2, "teacher_training": {"epochs": 1 if q else 2, "batch_size": 16, "lr": 2e-4,
                                                       "layer_decay": 1.0, "min_steps": 0, "warmup": 0.1},
                     "student_training": {"epochs": 2 if q else 3, "batch_size": 16, "lr": 2e-4, "layer_decay": 1.0,
                                          "min_steps": 0, "warmup": 0.1}},
            "images": {"data": args.image_data, "k": 10 if q else 20, "teacher_size": 64, "student_size": 16,
                       "teacher_training": {"epochs": 3 if q else 5},
                       "student_training": {"epochs": 4 if q else 8}}}


# -- data ---------------------------------------------------------------------------------------------------------
def text_parts(s: dict[str, Any], seed: int) -> dict[str, Any]:
    import numpy as np

    from transferkit.data import from_arrays

    t = s["text"]
    d = common.spam(s["quick"], seed)
    tr = common.finetune_subset(d, t["n_train"], seed)
    rest = np.setdiff1d(d["pool"], tr)
    unl = np.sort(np.random.default_rng(seed + 1000).permutation(rest)[:t["n_unlabelled"]])
    part = {k: from_arrays([d["texts"][i] for i in idx], d["y"][idx])
            for k, idx in (("train", tr), ("val", d["val"]), ("test", d["test"]))}
    part["unlabelled"] = from_arrays([d["texts"][i] for i in unl])
    for k, v in part.items():
        v.origin = f"spamassassin seed {seed} {k}"
    return part


def image_parts(s: dict[str, Any], seed: int) -> dict[str, Any]:
    import numpy as np

    from transferkit.data import from_arrays

    d = common.images(s["images"]["data"], s["quick"], seed)
    X, y, vmax = d["X"], d["y"], d["value_max"]
    lab = common.kshot(y, d["train"], s["images"]["k"], seed)
    unl = np.setdiff1d(d["train"], lab)
    part = {k: from_arrays(X[idx], y[idx], value_max=vmax) for k, idx in
            (("train", lab), ("val", d["val"]), ("test", d["test"]))}
    part["unlabelled"] = from_arrays(X[unl], value_max=vmax)
    for k, v in part.items():
        v.origin = f"{s['images']['data']} seed {seed} {k}"
    return part


# -- teachers and cells ----------------------------------------------------------------------------------------
def teacher_run(kind: str, s: dict[str, Any], seed: int, parts: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The seed's teacher run (fitted once; reused while its settings are unchanged)."""
    from transferkit.config import FitConfig
    from transferkit.features import FeatureCache
    from transferkit.pipeline import fit

    name = f"teacher-{kind}-seed{seed}"
    run, meta = OUT / "runs" / name, OUT / "runs" / f"{name}.json"
    if kind == "text":
        t = s["text"]
        cfg = dict(backbone=TEXT_TEACHER, strategy="fine-tune", max_length=t["max_length"], **t["teacher_training"])
    else:
        i = s["images"]
        cfg = dict(backbone=IMAGE_TEACHER, strategy="fine-tune", image_size=i["teacher_size"], **i["teacher_training"])
    want = {"config": cfg, "seed": seed, "quick": s["quick"],
            "data": [parts[k].content_hash() for k in ("train", "val", "test")]}
    if (run / "run.json").exists() and meta.exists() and json.loads(meta.read_text())["want"] == want:
        return run, json.loads(meta.read_text())
    log(f"seed {seed}: fitting the {kind} teacher ({cfg['backbone']}) on {len(parts['train'])} labelled examples")
    c = FitConfig.from_dict({**cfg, "seed": seed, "num_threads": s["threads"], "runs_dir": str(OUT / "runs"),
                             "name": name, "overwrite": True})
    t0 = time.perf_counter()
    r = fit(c, train=parts["train"], val=parts["val"], test=parts["test"], progress=False,
            cache=FeatureCache(OUT / "feature-cache"))
    record = {"want": want, "macro_f1": r.metrics["macro_f1"], "seconds": time.perf_counter() - t0}
    write_json(meta, record)
    log(f"seed {seed}: {kind} teacher test macro-F1 {record['macro_f1']:.4f} ({record['seconds']:.0f} s)")
    return run, record


def cells(s: dict[str, Any], only: set[str]) -> list[dict[str, Any]]:
    out = []
    if "text" in only:
        layers = s["text"]["layers"]
        out += [{"id": f"text-L{layers}", "kind": "text", "unlabelled": False, "compare": True},
                {"id": f"text-L{layers}-unlabelled", "kind": "text", "unlabelled": True, "compare": False}]
    if "images" in only:
        out.append({"id": "images-cnn16-unlabelled", "kind": "images", "unlabelled": True, "compare": True})
    return out


def run_cell(cell: dict[str, Any], s: dict[str, Any], seed: int, teacher: Path, parts: dict[str, Any]
             ) -> dict[str, Any]:
    from transferkit.distill import DistillConfig, distill
    from transferkit.features import FeatureCache

    if cell["kind"] == "text":
        t = s["text"]
        cfg = dict(student_layers=t["layers"], max_length=t["max_length"], **t["student_training"])
    else:
        i = s["images"]
        cfg = dict(student="scratch:cnn", image_size=i["student_size"], **i["student_training"])
    c = DistillConfig.from_dict({**cfg, "teacher": str(teacher), "seed": seed, "num_threads": s["threads"],
                                 "compare": cell["compare"]})
    t0 = time.perf_counter()
    r = distill(c, train=parts["train"], unlabelled=parts["unlabelled"] if cell["unlabelled"] else None,
                val=parts["val"], test=parts["test"], progress=False, save=False,
                cache=FeatureCache(OUT / "feature-cache"))
    return {"comparison": r.comparison, "seconds": time.perf_counter() - t0, "sizes": r.details["sizes"],
            "student": r.details["student"], "lr": r.details["lr"],
            "settings": {k: v for k, v in c.to_dict().items() if k not in ("teacher", "runs_dir", "name")}}


# -- summary -----------------------------------------------------------------------------------------------------
def _ci(mean: float, half: float | None) -> str:
    return f"{mean:+.4f}" + (f" [{mean - half:+.4f}, {mean + half:+.4f}]" if half is not None else " (1 seed)")


def summarise(results: dict[str, dict[int, dict[str, Any]]], cell_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for cell in cell_list:
        per = results.get(cell["id"], {})
        if not per:
            continue
        base_id = cell["id"].removesuffix("-unlabelled") if cell["kind"] == "text" else cell["id"]
        seeds = sorted(k for k in per if results.get(base_id, {}).get(k, {}).get("comparison", {})
                       .get("no_distillation") is not None)
        if not seeds:
            continue

        def val(seed: int, side: str, key: str, per: dict = per, base: dict = results[base_id]) -> float:
            src = base[seed] if side == "no_distillation" else per[seed]
            return float(src["comparison"][side][key])

        def lat(seed: int, side: str, b: str, per: dict = per) -> float:
            return float(per[seed]["comparison"][side]["latency"][b]["seconds"])

        diffs = [val(k, "student", "macro_f1") - val(k, "no_distillation", "macro_f1") for k in seeds]
        mean, half = t_interval(diffs)
        c0 = per[seeds[0]]["comparison"]
        rows.append({
            "cell": cell["id"], "seeds": seeds, "n": len(seeds),
            "teacher": statistics.mean(val(k, "teacher", "macro_f1") for k in seeds),
            "student": statistics.mean(val(k, "student", "macro_f1") for k in seeds),
            "no_distillation": statistics.mean(val(k, "no_distillation", "macro_f1") for k in seeds),
            "of_teacher": statistics.mean(val(k, "student", "macro_f1") / val(k, "teacher", "macro_f1")
                                          for k in seeds),
            "speedup_b1": statistics.median(lat(k, "teacher", "b1") / lat(k, "student", "b1") for k in seeds),
            "speedup_b32": statistics.median(lat(k, "teacher", "b32") / lat(k, "student", "b32") for k in seeds),
            "teacher_ms": [statistics.median(lat(k, "teacher", b) for k in seeds) * 1e3 for b in ("b1", "b32")],
            "student_ms": [statistics.median(lat(k, "student", b) for k in seeds) * 1e3 for b in ("b1", "b32")],
            "params": [c0["teacher"]["parameters"], c0["student"]["parameters"]],
            "bytes": [c0["teacher"]["file_bytes"], c0["student"]["file_bytes"]],
            "teacher_backbone": c0["teacher"]["backbone"], "student_backbone": c0["student"]["backbone"],
            "diff": mean, "half": half, "diffs": diffs,
            "per_seed": {k: {"teacher": val(k, "teacher", "macro_f1"), "student": val(k, "student", "macro_f1"),
                             "no_distillation": val(k, "no_distillation", "macro_f1")} for k in seeds},
            "unlabelled": per[seeds[0]]["sizes"]["unlabelled"], "labelled": per[seeds[0]]["sizes"]["labelled"],
            "kind": cell["kind"]})
    return rows


def targets(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        keep = r["of_teacher"] >= 0.97
        fast = min(r["speedup_b1"], r["speedup_b32"]) >= 2.0
        gain_needed = 0.01 if r["kind"] == "images" else 0.0
        beats = r["diff"] > gain_needed
        sure = r["half"] is not None and r["diff"] - r["half"] > 0
        out.append(f"- `{r['cell']}`: >= 97% of the teacher's macro-F1 **{'met' if keep else 'not met'}** "
                   f"({r['of_teacher']:.1%}); >= 2x lower CPU latency **{'met' if fast else 'not met'}** "
                   f"({r['speedup_b1']:.2f}x at batch 1, {r['speedup_b32']:.2f}x at batch 32); beats the "
                   f"no-distillation student{' by >= 1 point' if gain_needed else ''} "
                   f"**{'met' if beats else 'not met'}** (mean {r['diff']:+.4f}"
                   + (", the 95% interval excludes 0" if sure else ", the 95% interval includes 0"
                      if r["half"] is not None else ", one seed") + ")")
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def markdown(s: dict[str, Any], rows: list[dict[str, Any]], cmd: str) -> str:
    t, i = s["text"], s["images"]
    lines = ["## Knowledge distillation (`transferkit distill`)", "",
             f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}, {s['threads']} torch thread(s), machine shared with "
             f"other jobs). Seeds {', '.join(map(str, s['seeds']))}; each seed draws its own split "
             "(`benchmarks/peers/common.py`), initialisation and batch order, shared by every side. `distill` "
             "defaults: temperature 2, alpha 0.5 (hard-label weight), no feature loss; the teacher's logits are "
             "computed once per transfer set.", "",
             f"- text: teacher `{TEXT_TEACHER}` fine-tuned on {t['n_train']} SpamAssassin e-mails "
             f"({t['teacher_training']['epochs']} epochs, batch 16, lr 2e-4, length {t['max_length']}); student = "
             f"its first {t['layers']} of 6 transformer layers (`--student-layers {t['layers']}`), "
             f"{t['student_training']['epochs']} epochs; `-unlabelled`: plus {t['n_unlabelled']} unlabelled "
             "e-mails of the pool (soft targets only); no distillation = the same cut student fine-tuned on the "
             "labelled e-mails alone.",
             f"- images: teacher `{IMAGE_TEACHER}` fine-tuned at {i['teacher_size']} px on k = {i['k']} labelled "
             f"{i['data']} images per class ({i['teacher_training']['epochs']} epochs); student `scratch:cnn` at "
             f"{i['student_size']} px ({i['student_training']['epochs']} epochs), the rest of the training split as "
             "unlabelled data; no distillation = the same CNN on the k labels alone.", "",
             "Test macro-F1, mean over seeds; diff = student minus the no-distillation student, mean paired "
             "difference with its 95% t-interval; latency: median over seeds of the median forward pass on CPU "
             "(prepared batches, batch 1 / 32).", "",
             "| cell | teacher | student | no distillation | student / teacher | diff [95% CI] | latency teacher -> "
             "student (b=1, b=32) | parameters | weights | seeds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} ({r['labelled']} labelled + {r['unlabelled']} unlabelled) | {r['teacher']:.4f} | "
            f"{r['student']:.4f} | {r['no_distillation']:.4f} | {r['of_teacher']:.1%} | {_ci(r['diff'], r['half'])} | "
            f"{r['teacher_ms'][0]:.1f} -> {r['student_ms'][0]:.1f} ms ({r['speedup_b1']:.2f}x), "
            f"{r['teacher_ms'][1]:.1f} -> {r['student_ms'][1]:.1f} ms ({r['speedup_b32']:.2f}x) | "
            f"{r['params'][0] / 1e6:.2f} M -> {r['params'][1] / 1e6:.2f} M | {_mb(r['bytes'][0])} -> "
            f"{_mb(r['bytes'][1])} | {r['n']} |")
    lines += ["", "Per seed (teacher / student / no distillation):", ""]
    for r in rows:
        lines.append(f"- {r['cell']}: " + "; ".join(f"s{k}: {v['teacher']:.4f} / {v['student']:.4f} / "
                                                   f"{v['no_distillation']:.4f}" for k, v in r["per_seed"].items()))
    lines += ["", "Targets:", "", *targets(rows), "",
              f"Raw results: `benchmarks/out/{OUT.name}/` (teacher runs under `runs/`, one JSON per cell and seed "
              "under `cells/`).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 96 e-mails, length 64, 1,200 MNIST images, k = 10")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0,1,2; quick: 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--only", default="text,images", help="comma-separated parts: text, images")
    ap.add_argument("--image-data", default="mnist", choices=("mnist", "digits"),
                    help="image task: mnist (a fixed 3,000-image sample of mnist10k; quick: 1,200) or digits")
    args = ap.parse_args()
    args.seeds = args.seeds or ("0" if args.quick else "0,1,2")
    common.pin_threads(args.threads)
    global OUT
    if args.quick:
        OUT = OUT.parent / "distill-quick"
        markdown_blocks.BENCHMARKS_MD = OUT / "BENCHMARKS-quick.md"
    s = settings(args)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "settings.json", s)
    cell_list = cells(s, only)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in s["seeds"]:
        for kind in ("text", "images"):
            mine = [c for c in cell_list if c["kind"] == kind]
            if not mine:
                continue
            parts = text_parts(s, seed) if kind == "text" else image_parts(s, seed)
            teacher, record = teacher_run(kind, s, seed, parts)
            for cell in mine:
                f = OUT / "cells" / f"{cell['id']}-seed{seed}.json"
                want = {"cell": cell, "seed": seed, "settings": s[kind], "quick": s["quick"],
                        "teacher": record["want"]}
                if f.exists() and json.loads(f.read_text()).get("want") == want:
                    res = json.loads(f.read_text())
                else:
                    log(f"seed {seed} {cell['id']} ...")
                    res = {"want": want, **run_cell(cell, s, seed, teacher, parts)}
                    write_json(f, res)
                    cmp_ = res["comparison"]
                    nod = cmp_["no_distillation"]
                    log(f"seed {seed} {cell['id']}: teacher {cmp_['teacher']['macro_f1']:.4f}, student "
                        f"{cmp_['student']['macro_f1']:.4f}" + (f", no distillation {nod['macro_f1']:.4f}" if nod
                                                                  else "") + f" ({res['seconds']:.0f} s)")
                results.setdefault(cell["id"], {})[seed] = res
    rows = summarise(results, cell_list)
    write_json(OUT / "summary.json", {"settings": s, "rows": rows})
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_distill.py" + (" --quick" if args.quick else "")
    text = markdown(s, rows, cmd)
    markdown_blocks.update_section(text, "distill")
    print(text, flush=True)
    log(f"wrote {markdown_blocks.BENCHMARKS_MD.relative_to(ROOT)} (section 'distill') and {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
