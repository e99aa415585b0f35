"""The peers table for BENCHMARKS.md, from the job records of one run_all.py invocation."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

PAIRS = [  # (label, transferkit job, peer job, peer name)
    ("MiniLM fine-tune, SpamAssassin (480 e-mails)", "tk_finetune", "hf_trainer",
     "HF Trainer + AutoModelForSequenceClassification"),
    ("MiniLM fine-tune, both bf16", "tk_finetune_bf16", "hf_trainer_bf16", "HF Trainer `bf16=True`"),
    ("EfficientNet-Lite0 fine-tune, digits 64 px", "tk_digits", "timm_digits", "plain timm / PyTorch loop"),
    ("EfficientNet-Lite0 fine-tune, MNIST 64 px", "tk_mnist", "timm_mnist", "plain timm / PyTorch loop"),
    ("few-shot k=8/class, SpamAssassin", "tk_contrastive_k8", "setfit_k8", "SetFit (MiniLM body)"),
    ("few-shot k=16/class, SpamAssassin", "tk_contrastive_k16", "setfit_k16", "SetFit (MiniLM body)"),
    ("few-shot k=8/class, frozen hybrid", "tk_k8", "setfit_k8", "SetFit (MiniLM body)"),
    ("few-shot k=16/class, frozen hybrid", "tk_k16", "setfit_k16", "SetFit (MiniLM body)"),
    ("few-shot k=64/class, frozen hybrid", "tk_k64", "setfit_k64", "SetFit (MiniLM body)"),
]
MIN_SEEDS = 5  # a target counts as met only over at least this many paired seeds
# transferkit jobs that solve the same task as a pair's transferkit job (time to the peer's accuracy)
SAME_TASK = {"tk_contrastive_k8": ["tk_k8"], "tk_contrastive_k16": ["tk_k16"], "tk_k8": ["tk_contrastive_k8"],
             "tk_k16": ["tk_contrastive_k16"]}


def _f(v: Any, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def _ratio(a: Any, b: Any, fmt: str = ".2f") -> str:
    return "-" if a is None or b is None or not b else format(a / b, fmt) + "x"


def _ok(r: dict | None) -> bool:
    return bool(r) and r.get("ok", False)


def seed0(res: dict, name: str) -> dict | None:
    """The first seed's record of a job (the single-run sections: k-shot curve, extraction)."""
    runs = res.get(name) or {}
    return runs[min(runs, key=int)] if runs else None


def paired(res: dict, a: str, b: str, key: str = "metric") -> dict | None:
    """Mean of each side and of the paired difference a - b over the seeds both ran, with a 95% t-interval."""
    ra, rb = res.get(a) or {}, res.get(b) or {}
    seeds = sorted((s for s in ra if s in rb and _ok(ra[s]) and _ok(rb[s]) and ra[s].get(key) is not None
                    and rb[s].get(key) is not None), key=int)
    if not seeds:
        return None
    x = np.asarray([ra[s][key] for s in seeds], float)
    y = np.asarray([rb[s][key] for s in seeds], float)
    d = x - y
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"seeds": seeds, "a": float(x.mean()), "b": float(y.mean()), "diff": float(d.mean()), "half": half,
            "per_seed": list(zip(seeds, x.tolist(), y.tolist())),
            "wall_a": float(np.mean([ra[s]["wall_s"] for s in seeds])),
            "wall_b": float(np.mean([rb[s]["wall_s"] for s in seeds])),
            # CPU seconds of the job process (1 thread: its wall time on an idle machine), where both sides have it
            **_cpu(ra, rb, seeds),
            "tp_a": _mean([ra[s].get("throughput") for s in seeds]), "tp_b": _mean([rb[s].get("throughput") for s in seeds]),
            "rss_a": float(np.mean([ra[s]["peak_rss_mb"] for s in seeds])),
            "rss_b": float(np.mean([rb[s]["peak_rss_mb"] for s in seeds])),
            "unit_a": ra[seeds[0]].get("throughput_unit"), "unit_b": rb[seeds[0]].get("throughput_unit")}


def _cpu(ra: dict, rb: dict, seeds: list[str]) -> dict:
    both = [s for s in seeds if ra[s].get("cpu_s") is not None and rb[s].get("cpu_s") is not None]
    if not both:
        return {"cpu_a": None, "cpu_b": None, "cpu_n": 0}
    return {"cpu_a": float(np.mean([ra[s]["cpu_s"] for s in both])),
            "cpu_b": float(np.mean([rb[s]["cpu_s"] for s in both])), "cpu_n": len(both)}


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _ci(p: dict) -> str:
    return f"{p['diff']:+.4f} [{p['diff'] - p['half']:+.4f}, {p['diff'] + p['half']:+.4f}]"


def _tk_desc(r: dict) -> str:
    if str(r.get("name", "")).startswith("tk_contrastive"):
        return "contrastive (top 3 MiniLM layers tuned, hybrid head)"
    if "strategy" in r:
        eng = (r.get("engine") or {}).get("engine", "eager")
        return f"{r['strategy']} (frozen MiniLM, engine {eng})"
    return r.get("description", "fine-tune")


def render(meta: dict, res: dict[str, dict], title: str = "Against what users would pick instead (issues 5, 12)") -> str:
    L: list[str] = [f"## {title}", ""]
    runs = meta.get("runs") or [meta]
    for m in runs:
        L.append(f"Command: `{m['command']}` (run {m['started']} on commit {m['commit']}; "
                 f"{(m.get('total_s') or 0) / 60:.1f} min){'; QUICK smoke run, not comparable' if meta['quick'] else ''}.")
    if len(runs) > 1:
        L.append("The table merges these runs job by job and seed by seed; both sides of each pair ran back to back "
                 "in the same run for every seed.")
    L.append("")
    loads = [x for r in res.values() for rec in r.values() for x in (rec.get("load_after") or [])[:1]]
    loads += [x for x in (meta.get("load_start") or [])[:1] + (meta.get("load_end") or [])[:1]]
    busy = bool(loads) and max(loads) > (meta.get("cpus") or 2) + 0.5
    load_text = (f"1-minute load average {min(loads):.1f}-{max(loads):.1f} at the jobs' ends" if loads else
                 "load not recorded")
    L.append(f"Machine: {meta['cpus']} CPU cores, no GPU. Every job ran in its own fresh Python process with "
             f"{meta['threads']} torch / BLAS thread(s). CPU s = user + system CPU time of the whole job process "
             "(interpreter start, imports, model load, training, prediction on the test set); with one thread it "
             "is the job's wall time on an idle machine and, unlike wall time, it hardly grows when other jobs share "
             f"the cores ({load_text}). "
             + ("More processes than cores ran at times, so wall times and the training-throughput column "
                "(examples / wall seconds of the training call) are shown but only the CPU-second ratios compare "
                "cleanly. " if busy else
                "The load stayed within the core count, so wall times and the training-throughput column "
                "(examples / wall seconds of the training call) compare too. ")
             + "Where a seed's record has no CPU time the CPU column averages the seeds that have it and says how "
             "many. Peak memory = the process's RSS high-water mark. Records: `benchmarks/out/peers/full/JOB@SEED.json`.")
    L.append("")
    L.append("Seeds: each seed draws its own stratified split (SpamAssassin: test 600, validation 200, the rest a "
             "training pool; digits and MNIST (a fixed 3,000-image sample of mnist10k): 70/15/15), initialisation "
             "and batch order, shared by both sides. Metric: test macro-F1. Difference = transferkit minus peer, "
             "mean over seeds with its 95% t-interval (paired).")
    L.append("")
    L.append("| comparison | transferkit | peer | seeds | macro-F1 tk / peer (means) | paired difference [95% CI] | "
             "CPU s tk / peer (ratio) | wall s tk / peer | throughput tk / peer (ratio) | peak RSS MB tk / peer |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for label, a, b, peer in PAIRS:
        p = paired(res, a, b)
        if p is None:
            continue
        same_unit = p["unit_a"] == p["unit_b"]
        cpu_note = "" if p["cpu_n"] == len(p["seeds"]) else f", {p['cpu_n']} seeds"
        L.append(f"| {label} | {_tk_desc(seed0(res, a))} | {peer} | {len(p['seeds'])} | {p['a']:.4f} / {p['b']:.4f} | "
                 f"{_ci(p)} | {_f(p['cpu_a'], '.1f')} / {_f(p['cpu_b'], '.1f')} ({_ratio(p['cpu_a'], p['cpu_b'])}"
                 f"{cpu_note}) | "
                 f"{p['wall_a']:.0f} / {p['wall_b']:.0f} | "
                 f"{_f(p['tp_a'], '.1f')} / {_f(p['tp_b'], '.1f')} {p['unit_a'] or ''}"
                 f"{'' if same_unit else ' vs ' + str(p['unit_b'])} "
                 f"({_ratio(p['tp_a'], p['tp_b']) if same_unit else 'n/a'}) | {p['rss_a']:.0f} / {p['rss_b']:.0f} |")
    L.append("")
    L += _per_seed(res)
    L += _ablations(res)
    L += _time_to_accuracy(res)
    L += _settings(res)
    L += _kshot(res)
    L += _extract(res)
    L += _targets(res)
    return "\n".join(L)


def _per_seed(res: dict) -> list[str]:
    rows = []
    for label, a, b, _ in PAIRS:
        p = paired(res, a, b)
        if p:
            rows.append(f"| {label} | " + " | ".join(f"s{s}: {x:.4f} / {y:.4f}" for s, x, y in p["per_seed"]) + " |")
    if not rows:
        return []
    n = max(len(r.split("|")) - 3 for r in rows)
    return (["Per seed (macro-F1 transferkit / peer):", "", "| comparison |" + " |" * n, "|---|" + "---|" * n]
            + rows + [""])


def _ablations(res: dict) -> list[str]:
    """Each ``job+key=value`` variant against its base job, paired over the seeds both ran."""
    rows = []
    for name in sorted(res):
        if "+" not in name:
            continue
        base = name.split("+")[0]
        p = paired(res, name, base)
        if p is None:
            continue
        change = ", ".join(name.split("+")[1:])
        rows.append(f"| {base} | {change} | {len(p['seeds'])} | {p['a']:.4f} / {p['b']:.4f} | {_ci(p)} | "
                    f"{p['wall_a']:.1f} / {p['wall_b']:.1f} |")
    if not rows:
        return []
    return ["### Ablations: one setting changed against transferkit's default recipe", "",
            "Each row runs the transferkit job with one FitConfig setting changed (everything else the default), "
            "on the same seeds, splits and batch orders as the default row; difference = variant minus default.", "",
            "| job | changed | seeds | macro-F1 variant / default | difference [95% CI] | wall s variant / default |",
            "|---|---|---|---|---|---|"] + rows + [""]


# Variants that are another way for a user to get a model, not an ablation of a default: another strategy (or
# auto) and another training budget. They compete in the time-to-accuracy table.
TIME_VARIANTS = ("strategy=", "epochs=")


def time_to_accuracy(res: dict, a: str, b: str) -> dict | None:
    """The cheapest transferkit job on the pair's task (the pair's own, its ``+`` variants such as other
    strategies or ``auto``, and :data:`SAME_TASK`) whose mean macro-F1 reaches the peer's, as a wall-time ratio."""
    peer = res.get(b) or {}
    if not peer:
        return None
    names = [n for n in res if (n.split("+")[0] == a and all(x.startswith(TIME_VARIANTS) for x in n.split("+")[1:]))
             or n in SAME_TASK.get(a, [])]
    out = {"peer_f1": None, "peer_wall": None, "candidates": []}
    for n in names:
        p = paired(res, n, b)
        if p is None:
            continue
        ta, tb = (p["cpu_a"], p["cpu_b"]) if p["cpu_n"] else (p["wall_a"], p["wall_b"])
        out["peer_f1"], out["peer_wall"] = p["b"], tb
        out["candidates"].append({"job": n, "f1": p["a"], "wall": ta, "reaches": p["a"] >= p["b"], "ratio": ta / tb})
    if not out["candidates"]:
        return None
    reach = [c for c in out["candidates"] if c["reaches"]]
    out["best"] = min(reach, key=lambda c: c["wall"]) if reach else None
    out["auto"] = next((c for c in out["candidates"] if "strategy=auto" in c["job"]), None)
    return out


def _time_to_accuracy(res: dict) -> list[str]:
    rows = []
    seen = set()
    for label, a, b, _ in PAIRS:
        if (a, b) in seen or a.startswith("tk_k"):
            continue
        seen.add((a, b))
        t = time_to_accuracy(res, a, b)
        if t is None:
            continue
        best = t["best"]
        auto = t["auto"]
        tried = ", ".join(f"`{c['job']}` {c['f1']:.4f} in {c['wall']:.0f} s" for c in t["candidates"])
        rows.append(f"| {label} | {t['peer_f1']:.4f} in {t['peer_wall']:.0f} s | "
                    + (f"`{best['job']}`: {best['f1']:.4f} in {best['wall']:.0f} s (**{best['ratio']:.2f}x**)" if best
                       else "not reached") + " | "
                    + (f"{auto['f1']:.4f} in {auto['wall']:.0f} s ({auto['ratio']:.2f}x"
                       + ("" if auto["reaches"] else ", below the peer") + ")" if auto else "-")
                    + f" | {tried} |")
    if not rows:
        return []
    return ["### Time to the peer's accuracy", "",
            "For each pair: the cheapest transferkit job on the same task and seeds (any strategy or training "
            "budget; `+strategy=X` / `+epochs=N` rows run the same job with that setting) whose mean test macro-F1 reaches the peer's mean, as a ratio "
            "of mean whole-job CPU seconds (1 thread: the wall time on an idle machine; below 1: transferkit gets "
            "there faster).", "",
            "| task | peer: macro-F1 in CPU s | fastest transferkit job reaching it (ratio) | `auto` (ratio) | "
            "every transferkit job tried (mean macro-F1, mean CPU s) |", "|---|---|---|---|---|"] + rows + [""]


def _settings(res: dict) -> list[str]:
    out = []
    ft, hf = seed0(res, "tk_finetune"), seed0(res, "hf_trainer")
    if _ok(ft) and _ok(hf):
        s = ft["settings"]
        out.append(f"Fine-tuning: {ft['n_train']} training e-mails (stratified), max length {s['max_length']}, batch "
                   f"{s['batch']}, {s['epochs']} epoch, lr {s['lr']}, warm-up {s['warmup']:.0%}, weight decay "
                   f"{s['weight_decay']}, one validation pass per epoch on the 200 validation e-mails in both; "
                   f"transferkit layer-wise LR decay {s['layer_decay']} (1 = the Trainer's single learning rate) and "
                   "length-bucketed batches, HF Trainer "
                   "uses its defaults (AdamW, linear schedule, `DataCollatorWithPadding`). Throughput = training "
                   f"e-mails / time of the training call including the validation pass (transferkit {ft['train_s']:.1f} s, "
                   f"HF `train_runtime` {hf['train_s']:.1f} s).")
    sf = seed0(res, "setfit_k8")
    if _ok(sf):
        s = sf["settings"]
        out.append(f"SetFit: `SetFitModel.from_pretrained(<packaged MiniLM dir>)`, max_seq_length {s['max_length']}, "
                   f"batch {s['batch_size']}, {s['num_epochs']} epoch, num_iterations {s['num_iterations']} capped at "
                   f"max_steps {s['max_steps']} contrastive steps, body lr {s['body_learning_rate']}, logistic-regression head; "
                   "it uses no validation set. transferkit's few-shot jobs and the TF-IDF peer choose C (and the "
                   "hybrid's embedding weight) on the 200 labelled validation e-mails, labels SetFit does not see. "
                   "Throughput column for this pair: test e-mails scored per second (transferkit: embedded per second).")
    im = seed0(res, "tk_digits")
    if _ok(im):
        s = im["settings"]
        out.append(f"Images: EfficientNet-Lite0 (packaged ImageNet weights; the timm loop builds "
                   f"`tf_efficientnet_lite0` and loads the same renamed state dict), {s['size']} px, batch {s['batch']}, "
                   f"AdamW lr {s['lr']}, weight decay {s['weight_decay']}, {s['warmup']:.0%} warm-up + cosine, epochs: "
                   f"digits {s['epochs']}, MNIST {(seed0(res, 'tk_mnist') or {}).get('settings', {}).get('epochs', '-')}; "
                   "both keep the best validation epoch. transferkit's other settings are its defaults "
                   f"(layer-wise LR decay {s.get('training', {}).get('layer_decay', '-')}, gradient clipping at "
                   f"{s.get('training', {}).get('grad_clip', '-')}).")
    return out + [""] if out else out


def _kshot(res: dict) -> list[str]:
    a, b = seed0(res, "tk_kshot"), seed0(res, "tfidf_lr")
    if not (_ok(a) and _ok(b)):
        return []
    ks = list(b["per_k"])
    out = ["### Text at each label budget k (per class), test macro-F1", "",
           "| series | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    out.append("| TF-IDF + LR (peer) | " + " | ".join(_f(b["per_k"][k]["metric"]) for k in ks) + " |")
    out.append("| transferkit linear-probe | " + " | ".join(_f(a["per_k"].get(k, {}).get("linear-probe")) for k in ks) + " |")
    if a["strategy"] == "hybrid":
        out.append("| transferkit hybrid | " + " | ".join(_f(a["per_k"].get(k, {}).get("hybrid")) for k in ks) + " |")
    best = a["strategy"]
    diffs = [f"{a['per_k'][k][best] - b['per_k'][k]['metric']:+.4f}" if k in a["per_k"] else "-" for k in ks]
    out.append(f"| {best} minus TF-IDF + LR | " + " | ".join(diffs) + " |")
    eng = a.get("engine") or {}
    par = eng.get("parity") or {}
    out += ["", f"transferkit extracted {a['n_extracted']} e-mails once ({a['extract_s']:.1f} s, engine "
            f"{eng.get('engine')}, parity with eager on the first batch: min cosine {_f(par.get('min_cosine'))}, "
            f"mean {_f(par.get('mean_cosine'))}) and fitted every k from the cache; the peer vectorises each k afresh.", ""]
    return out


def _extract(res: dict) -> list[str]:
    rows = [(n, seed0(res, n)) for n in ("extract_image", "extract_text") if _ok(seed0(res, n))]
    if not rows:
        return []
    out = ["### Feature-extraction throughput (best of the alternating rounds)", "",
           "Pipeline = `extract_features(backbone, Inputs(ds, backbone), batch, engine=...)` (batch assembly "
           "included). Bare = the same model object, compiled function or ONNX Runtime session over batches built "
           "beforehand in that engine's own input format (the ONNX image graph takes uint8 images and normalises "
           "inside the graph; eager takes normalised channels_last tensors, 'NCHW' the same made contiguous). "
           "The data are cut into chunks and every variant runs on each chunk in turn; the table gives each "
           "variant's best chunk. `compiled` is not run for MiniLM (compiling for dynamic lengths takes minutes "
           "on one thread).", "",
           "| model | batch | n | variant | samples/s |", "|---|---|---|---|---|"]
    for _, r in rows:
        what = f"{r['model']}, {'128 px' if r['unit'] == 'img/s' else 'max length 128'}"
        for k, v in sorted(r["best"].items(), key=lambda kv: -kv[1]):
            out.append(f"| {what} | {r['batch']} | {r['n']} | {k} | {v:.1f} |")
    out.append("")
    for _, r in rows:
        par = "; ".join(f"{e}: " + (f"fell back ({rec['fallback']})" if rec.get("fallback") else
                                    f"max abs diff {rec['parity']['max_abs_diff']:.1e}, min cosine "
                                    f"{rec['parity']['min_cosine']:.5f}" if rec.get("parity") else "reference")
                        + f", set-up {r['setup_s'].get(e, 0):.1f} s" for e, rec in r["engines"].items())
        out.append(f"- {r['model']}: parity against eager on the first batch and set-up time (export / compile + "
                   f"first batch): {par}.")
    out.append("")
    return out


def _targets(res: dict) -> list[str]:
    out = ["### Targets", ""]

    def line(name: str, met: bool | None, detail: str, seeds: int = MIN_SEEDS) -> None:
        status = "n/a (job missing or failed)" if met is None else ("**met**" if met else "**not met**")
        if met is not None and seeds < MIN_SEEDS:
            status = (f"**{'ahead' if met else 'behind'} so far, not yet shown** ({seeds} of the {MIN_SEEDS} seeds "
                      "the claim needs)")
        out.append(f"- {name}: {status} ({detail})")

    for label, a, b, _ in PAIRS[:4]:
        p = paired(res, a, b)
        if p is None:
            continue
        line(f"{label}: mean macro-F1 >= the peer's", p["a"] >= p["b"],
             f"{p['a']:.4f} vs {p['b']:.4f} over {len(p['seeds'])} seeds, difference {_ci(p)}", len(p["seeds"]))
    p = paired(res, "tk_finetune", "hf_trainer", "throughput")
    if p:
        r = p["a"] / p["b"]
        q = paired(res, "tk_finetune", "hf_trainer")
        cpu = (f"; whole-job CPU time {q['cpu_a']:.0f} vs {q['cpu_b']:.0f} s ({q['cpu_b'] / q['cpu_a']:.2f}x the "
               f"Trainer's speed)" if q and q["cpu_n"] else "")
        line("fine-tuning throughput >= 1.2x HF Trainer (both fp32, same recipe)", r >= 1.2,
             f"{r:.2f}x: {p['a']:.1f} vs {p['b']:.1f} train e-mails/s by wall time, means over "
             f"{len(p['seeds'])} seeds{cpu}")
    for k in (8, 16):
        p = paired(res, f"tk_contrastive_k{k}", f"setfit_k{k}")
        if p is None:
            if any(n.startswith((f"tk_contrastive_k{k}", f"setfit_k{k}")) for n in res):  # run, but failed
                line(f"few-shot k={k}: macro-F1 >= SetFit's at <= 0.5x its wall time", None, "")
            continue
        if p["cpu_n"]:
            r, what = p["cpu_a"] / p["cpu_b"], (f"CPU {p['cpu_a']:.0f} vs {p['cpu_b']:.0f} s ({p['cpu_a'] / p['cpu_b']:.2f}x"
                                                f", {p['cpu_n']} seeds with CPU times)")
        else:
            r, what = p["wall_a"] / p["wall_b"], f"wall {p['wall_a']:.0f} vs {p['wall_b']:.0f} s ({p['wall_a'] / p['wall_b']:.2f}x)"
        line(f"few-shot k={k}: macro-F1 >= SetFit's at <= 0.5x its time", p["a"] >= p["b"] and r <= 0.5,
             f"{p['a']:.4f} vs {p['b']:.4f} over {len(p['seeds'])} seeds, difference {_ci(p)}; {what}",
             len(p["seeds"]))
    for n, what in (("extract_image", "EfficientNet-Lite0 128 px, batch 64"), ("extract_text", "MiniLM length 128, batch 32")):
        r = seed0(res, n)
        if _ok(r):
            line(f"feature extraction >= 90% of the fastest engine ({what})", r["ratio"] >= 0.9,
                 f"measured {r['ratio']:.1%}: {r['fastest_pipeline']} {r['best'][r['fastest_pipeline']]:.1f} vs "
                 f"{r['fastest_bare']} {r['best'][r['fastest_bare']]:.1f} {r['unit']}")
    out.append("")
    return out
