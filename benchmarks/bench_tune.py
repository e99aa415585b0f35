"""Hyper-parameter search: TPE + Hyperband pruning vs random search vs the default config, at an equal wall-time
budget per search (``transferkit.tuning.tune`` with ``timeout``), on two tasks:

* ``spam``: SpamAssassin e-mails (``benchmarks/peers/common.py`` ``spam(quick, seed)``: its validation and test
  sets; a stratified training subset of the pool, ``finetune_subset``), backbone packaged:minilm-l6; the space
  mixes the linear probe and fine-tuning (strategy, lr, epochs, batch size, the probe's C grid).
* ``digits``: scikit-learn digits (``common.images('digits', quick, seed)``: 70/15/15), scratch:cnn fine-tuned at
  32 px; the space: lr, epochs, batch size, weight decay, label smoothing, warm-up, head.

Per task and method: best validation macro-F1 within the budget, the test macro-F1 of the config it chose (a refit
on the same splits: the test split is used once per config), trials run / pruned, the compute the trials used
(CPU seconds, one torch thread) and an estimate of what pruning saved (each pruned trial's remaining epochs at its
own per-epoch cost; an upper bound, since early stopping could have ended some earlier), and the compute TPE needed
to first reach random search's best validation score. The default is the base config itself (refit once).
Then 20 linear-probe trials on the spam task with the process's peak RSS after each trial (flat = no growth).

Usage: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tune.py [--quick] [--minutes-spam 20]
       [--minutes-digits 10] [--threads 1]
Writes the section between <!-- tune:start --> and <!-- tune:end --> of BENCHMARKS.md (with --quick: of
benchmarks/out/tune-quick/BENCHMARKS-quick.md instead, so a smoke run never lands in BENCHMARKS.md) and raw JSON
into benchmarks/out/tune/ (one JSON per (task, method); the studies and refit runs under runs/). A finished
(task, method) with the same settings is reused; an unfinished one starts over, so that budgets stay equal.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402  (benchmarks/peers/common.py: the shared splits)
from bench_common import log, write_json  # noqa: E402
import markdown_blocks  # noqa: E402
from transferkit.tuning.search import TPE_STARTUP_TRIALS  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "tune"
METHODS = {"tpe-hyperband": {"sampler": "tpe", "pruner": "hyperband"},
           "random": {"sampler": "random", "pruner": "none"}}
MEMORY_TRIALS = 20
# bumped when the tuner's search changes, so that results of the older search are not reused: 2 = a conditional
# space (a trial draws only what its strategy reads), repeated configs skipped, grouped multivariate TPE
REVISION = 2


# -- tasks -------------------------------------------------------------------------------------------------------
def task(name: str, quick: bool, threads: int) -> dict[str, Any]:
    """Base config, space and in-memory splits of a task."""
    from transferkit.data import from_arrays

    if name == "spam":
        d = common.spam(quick, common.SEED)
        tr = common.finetune_subset(d, 64 if quick else 240, common.SEED)
        parts = {k: from_arrays([d["texts"][i] for i in idx], d["y"][idx])
                 for k, idx in (("train", tr), ("val", d["val"]), ("test", d["test"]))}
        base = {"backbone": "packaged:minilm-l6", "max_length": 32 if quick else 64, "min_steps": 0,
                "num_threads": threads, "seed": 0}
        space = {"strategy": {"choices": ["linear-probe", "fine-tune"]},
                 "lr": {"low": 1e-5, "high": 1e-3, "log": True},
                 "epochs": {"low": 1, "high": 2 if quick else 4},
                 "batch_size": {"choices": [8, 16, 32]},
                 "probe_grid": {"choices": [[0.001, 0.01, 0.1], [0.01, 0.1, 1.0, 10.0], [1.0, 10.0, 100.0, 1000.0]]}}
    else:
        d = common.images("digits", quick, common.SEED)
        parts = {k: from_arrays(d["X"][d[k]], d["y"][d[k]], value_max=d["value_max"]) for k in ("train", "val", "test")}
        base = {"backbone": "scratch:cnn", "strategy": "fine-tune", "image_size": 32, "min_steps": 0,
                "num_threads": threads, "seed": 0}
        space = {"lr": {"low": 1e-4, "high": 3e-1, "log": True},
                 "epochs": {"low": 2, "high": 4 if quick else 10},
                 "batch_size": {"choices": [16, 32, 64]},
                 "weight_decay": {"low": 1e-5, "high": 1e-1, "log": True},
                 "label_smoothing": {"low": 0.0, "high": 0.2},
                 "warmup": {"low": 0.0, "high": 0.3},
                 "head": {"choices": ["linear", "mlp"]}}
    return {"base": base, "space": space, "parts": parts,
            "sizes": {k: len(v) for k, v in parts.items()}}


def trials_record(study_dir: Path, name: str) -> list[dict[str, Any]]:
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'study.db'}")
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
                    **{k: t.user_attrs.get(k) for k in ("epochs_run", "epochs_planned", "seconds", "cpu_seconds",
                                                         "rss_mb", "peak_rss_mb", "repeats")}})
    return out


def search_name(task_name: str, method: str, seed: int) -> str:
    """The study and result-file name of one search (seed 0 keeps the name it had before seeds were added)."""
    return f"{task_name}-{method}" + (f"-s{seed}" if seed else "")


def search(task_name: str, method: str, t: dict[str, Any], minutes: float, cache_dir: Path,
           seed: int = 0) -> dict[str, Any]:
    from transferkit.features import FeatureCache
    from transferkit.tuning import tune

    name = search_name(task_name, method, seed)
    study_dir = OUT / "runs" / "tune" / name
    shutil.rmtree(study_dir, ignore_errors=True)  # an equal budget: never continue an unfinished search
    base = {**t["base"], "runs_dir": str(OUT / "runs")}
    t0 = time.perf_counter()
    r = tune(base, t["space"], train=t["parts"]["train"], val=t["parts"]["val"], test=t["parts"]["test"],
             study=name, timeout=minutes * 60, trials=10_000, refit=True, progress=False,
             cache=FeatureCache(cache_dir), seed=seed, **METHODS[method])
    return {"seconds": time.perf_counter() - t0, "counts": r.counts, "best_value": r.best_value,
            "best_params": r.best_params, "refit": r.refit, "trials": trials_record(study_dir, name)}


def compute(trials: list[dict[str, Any]]) -> dict[str, float]:
    cpu = sum(x["cpu_seconds"] or 0.0 for x in trials)
    saved = 0.0
    for x in trials:
        if x["state"] == "PRUNED" and x["epochs_run"]:
            saved += (x["epochs_planned"] - x["epochs_run"]) / x["epochs_run"] * (x["cpu_seconds"] or 0.0)
    return {"cpu": cpu, "saved": saved}


def to_reach(trials: list[dict[str, Any]], target: float | None) -> float | None:
    """CPU seconds of the trials (in completion order) until the running best first reaches ``target``."""
    if target is None:
        return None
    used, best = 0.0, float("-inf")
    for x in sorted((x for x in trials if x["complete"] is not None), key=lambda x: x["complete"]):
        used += x["cpu_seconds"] or 0.0
        if x["state"] == "COMPLETE" and x["value"] is not None:
            best = max(best, x["value"])
        if best >= target - 1e-12:
            return used
    return None


def memory(t: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    """20 linear-probe trials, first thing in this process: resident memory (now, and peak) after each."""
    from transferkit.features import FeatureCache
    from transferkit.tuning import tune

    name = "spam-memory"
    shutil.rmtree(OUT / "runs" / "tune" / name, ignore_errors=True)
    # 40 distinct probe configs (one C each, with or without class weights): no trial repeats another
    space = {"probe_grid": {"choices": [[round(10 ** (-3 + 6 * i / 19), 6)] for i in range(20)]},
             "class_weights": {"choices": [False, True]}}
    r = tune({**t["base"], "strategy": "linear-probe", "runs_dir": str(OUT / "runs")}, space,
             train=t["parts"]["train"], val=t["parts"]["val"], test=t["parts"]["test"], study=name,
             trials=MEMORY_TRIALS, sampler="random", pruner="none", progress=False, cache=FeatureCache(cache_dir))
    recs = sorted((x for x in trials_record(r.out_dir, name) if x["state"] == "COMPLETE"), key=lambda x: x["number"])
    rss, peak = [x["rss_mb"] for x in recs], [x["peak_rss_mb"] for x in recs]
    half = len(rss) // 2 - 1
    return {"rss_mb": rss, "peak_rss_mb": peak, "rss_growth_second_half_mb": rss[-1] - rss[half],
            "peak_growth_second_half_mb": peak[-1] - peak[half]}


# -- report ------------------------------------------------------------------------------------------------------
def rows_for(task_name: str, res: dict[str, dict[str, Any]], seed: int = 0, with_default: bool = True
             ) -> list[dict[str, Any]]:
    tpe, rnd = res["tpe-hyperband"], res["random"]
    default = tpe["refit"]["default"] if tpe["refit"] else None
    target = rnd["best_value"]
    rows = []
    for method, r in res.items():
        c = compute(r["trials"])
        rows.append({"task": task_name, "seed": seed, "method": method, "best_val": r["best_value"],
                     "test": r["refit"]["best"]["test"] if r["refit"] else None, "trials": r["counts"]["finished"]
                     + r["counts"]["fail"], "pruned": r["counts"]["pruned"], "failed": r["counts"]["fail"],
                     "repeats": r["counts"].get("repeated", 0),
                     "cpu": c["cpu"], "saved": c["saved"], "seconds": r["seconds"]})
    reach, rnd_reach = to_reach(tpe["trials"], target), to_reach(rnd["trials"], target)
    tpe_row = rows[0]
    tpe_row["reach"], rows[1]["reach"] = reach, rnd_reach
    tpe_row["reach_frac"] = reach / rnd_reach if reach is not None and rnd_reach else None
    tpe_row["target_met"] = bool(default is not None and tpe_row["best_val"] is not None
                                 and tpe_row["best_val"] >= default["val"] - 1e-12
                                 and tpe_row["best_val"] >= (target or 0) - 1e-12
                                 and tpe_row["reach_frac"] is not None and tpe_row["reach_frac"] <= 0.5)
    if with_default:  # the base config refit: the same for every sampler seed
        rows.append({"task": task_name, "seed": None, "method": "default",
                     "best_val": default["val"] if default else None, "test": default["test"] if default else None,
                     "trials": 1, "pruned": 0, "failed": 0, "repeats": 0, "cpu": None, "saved": 0.0, "seconds": None})
    return rows


def _f(v: Any, digits: int = 4) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def markdown(s: dict[str, Any], rows: list[dict[str, Any]], mem: dict[str, Any], cmd: str) -> str:
    lines = ["## Hyper-parameter search (`transferkit tune`)", "",
             f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}, {s['threads']} torch thread per search; the TPE and "
             "the random searches ran as two processes at the same time, one per core, with `--searches-only "
             "--methods M`). Each search gets the same wall-time budget (spam {s['minutes']['spam']:g} min, digits "
             f"{s['minutes']['digits']:g} min; `tune(..., timeout=...)`: no trial starts after it), one process, "
             f"SQLite storage, sampler seed(s) {', '.join(str(x) for x in s.get('sampler_seeds', [0]))} (each seed: "
             "one TPE and one random search, both from that seed). TPE + Hyperband (`--sampler tpe --pruner hyperband`, the defaults) vs "
             "random search (`--sampler random --pruner none`) vs the base config unchanged (default). Objective: "
             "validation macro-F1; test macro-F1 of the chosen config from a refit on the same splits (the test "
             "split is used once per config).", "",
             f"Data: spam = SpamAssassin (`common.spam`), train {s['sizes']['spam']['train']} e-mails "
             f"(`finetune_subset`), validation {s['sizes']['spam']['val']}, test {s['sizes']['spam']['test']}; "
             f"packaged:minilm-l6, max_length {s['spam_max_length']}; space: strategy linear-probe | fine-tune, lr, "
             "epochs, batch size, probe C grid. digits = scikit-learn digits 70/15/15 (`common.images`), train "
             f"{s['sizes']['digits']['train']}, validation {s['sizes']['digits']['val']}, test "
             f"{s['sizes']['digits']['test']}; scratch:cnn fine-tuned at 32 px; space: lr, epochs, batch size, weight "
             "decay, label smoothing, warm-up, head. Base configs: min_steps 0, other settings default.", "",
             "| task | sampler seed | method | best val F1 | test F1 | trials | pruned | repeats skipped | trial CPU s "
             "| saved by pruning (CPU s, est.) | CPU s to reach random's best val |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reach = "-"
        if r["method"] == "tpe-hyperband":
            reach = ("not reached" if r.get("reach") is None else
                     f"{r['reach']:.0f} ({r['reach_frac']:.0%} of random's)")
        elif r["method"] == "random" and r.get("reach") is not None:
            reach = f"{r['reach']:.0f}"
        lines.append(f"| {r['task']} | {_f(r.get('seed'))} | {r['method']} | {_f(r['best_val'])} | {_f(r['test'])} | {r['trials']} | "
                     f"{r['pruned']} | {r.get('repeats', 0)} | {_f(r['cpu'], 0)} | {_f(r['saved'], 0) if r['method'] != 'default' else '-'} "
                     f"| {reach} |")
    verdict = []
    for task_name in dict.fromkeys(r["task"] for r in rows):
        tp = [r for r in rows if r["task"] == task_name and r["method"] == "tpe-hyperband"]
        met = [r for r in tp if r["target_met"]]
        fracs = sorted(r["reach_frac"] for r in tp if r.get("reach_frac") is not None)
        verdict.append(f"{task_name}: met for {len(met)} of {len(tp)} sampler seed(s)"
                       + (f" (compute to reach random's best: {', '.join(f'{x:.0%}' for x in fracs)} of random's)"
                          if fracs else ""))
    pairs = [(t, r) for t in rows if t["method"] == "tpe-hyperband" for r in rows
             if r["method"] == "random" and r["task"] == t["task"] and r["seed"] == t["seed"]]
    at_least = sum(t["best_val"] >= r["best_val"] - 1e-12 for t, r in pairs)
    above = sum(t["best_val"] > r["best_val"] + 1e-12 for t, r in pairs)
    rss, peak = mem["rss_mb"], mem["peak_rss_mb"]
    at = [i for i in (0, 4, 9, 19) if i < len(rss)]
    lines += ["", "CPU s to reach random's best val: the trials' CPU seconds, in completion order, until the running "
              "best validation F1 first reaches random search's final best (for random: its own compute to get "
              "there).", "",
              "Target (pruned TPE >= default and >= random on validation, reaching random's best with <= 50% of "
              f"the compute random needed to get there): {'; '.join(verdict)}. Best validation F1 alone: TPE >= "
              f"random in {at_least} of {len(pairs)} searches (higher in {above}).", "",
              f"TPE's first {TPE_STARTUP_TRIALS} trials are random draws (`n_startup_trials`; Optuna's default is 10) "
              "from the same seed as random search, so both start from the same configurations; TPE + Hyperband gets "
              f"more trials into the budget by pruning, and proposes from its model after {TPE_STARTUP_TRIALS}.", "",
              "The space is conditional: a trial draws only the settings its strategy reads (a linear-probe trial "
              "draws the C grid, not lr / epochs / batch size), TPE is multivariate over those groups "
              "(`group=True`), and a proposal that repeats a config already fitted is skipped without fitting "
              "(repeats skipped; the next proposal is a random draw): a spam search has only three distinct probe "
              "configs.", "",
              f"Memory: {MEMORY_TRIALS} linear-probe trials on the spam task, first thing in the process (MiniLM "
              f"built per trial, features from the shared cache): resident memory after trial "
              f"{' / '.join(str(i + 1) for i in at)} = {' / '.join(f'{rss[i]:.0f}' for i in at)} MiB, peak "
              f"{' / '.join(f'{peak[i]:.0f}' for i in at)} MiB ({mem['rss_growth_second_half_mb']:+.0f} MiB resident, "
              f"{mem['peak_growth_second_half_mb']:+.0f} MiB peak over the second half).", "",
              f"Raw results: `benchmarks/out/{OUT.name}/` (one JSON per task and method with every trial).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small data, 1-minute budgets")
    ap.add_argument("--minutes-spam", type=float, default=None, help="budget per search (default 20; quick 1)")
    ap.add_argument("--minutes-digits", type=float, default=None, help="budget per search (default 10; quick 0.75)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--sampler-seeds", default="0",
                    help="comma-separated sampler seeds: one TPE and one random search per seed and task (default 0)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="run only these searches (with --searches-only: two processes can split the work)")
    ap.add_argument("--searches-only", action="store_true",
                    help="run the searches and write their JSON; no memory phase, no BENCHMARKS.md (a later run "
                         "without it reuses them)")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    seeds = [int(x) for x in args.sampler_seeds.split(",") if x.strip()]
    common.pin_threads(args.threads)
    global OUT
    if args.quick:
        OUT = OUT.parent / "tune-quick"
        markdown_blocks.BENCHMARKS_MD = OUT / "BENCHMARKS-quick.md"
    minutes = {"spam": args.minutes_spam or (1.0 if args.quick else 20.0),
               "digits": args.minutes_digits or (0.75 if args.quick else 10.0)}
    OUT.mkdir(parents=True, exist_ok=True)
    cache_dir = OUT / "feature-cache"
    tasks = {name: task(name, args.quick, args.threads) for name in ("spam", "digits")}
    s = {"quick": args.quick, "threads": args.threads, "minutes": minutes,
         "sizes": {k: v["sizes"] for k, v in tasks.items()}, "spam_max_length": tasks["spam"]["base"]["max_length"],
         "sampler_seeds": seeds}
    write_json(OUT / "settings.json", s)
    mem = None
    if not args.searches_only:
        log(f"memory: {MEMORY_TRIALS} linear-probe trials ...")  # first, so that the peak is this phase's own
        mem = memory(tasks["spam"], cache_dir)
        write_json(OUT / "memory.json", mem)
    rows: list[dict[str, Any]] = []
    for name, t in tasks.items():
        for i, seed in enumerate(seeds):
            res = {}
            for method in methods:
                f = OUT / f"{search_name(name, method, seed)}.json"
                want = {"base": t["base"], "space": t["space"], "minutes": minutes[name], "method": METHODS[method],
                        "sizes": t["sizes"], "revision": REVISION, **({"sampler_seed": seed} if seed else {})}
                if f.exists() and json.loads(f.read_text()).get("want") == want:
                    res[method] = json.loads(f.read_text())
                    log(f"{name} {method}: reusing {f.relative_to(ROOT)}")
                    continue
                log(f"{name} {method} seed {seed}: searching for {minutes[name]:g} min ...")
                res[method] = {"want": want, **search(name, method, t, minutes[name], cache_dir, seed)}
                write_json(f, res[method])
                r = res[method]
                log(f"{name} {method}: {r['counts']}, best val {r['best_value']}, test "
                    f"{r['refit']['best']['test'] if r['refit'] else None}")
            if not args.searches_only:
                rows += rows_for(name, res, seed, with_default=i == len(seeds) - 1)
    if args.searches_only:
        log(f"searches written to {OUT.relative_to(ROOT)}/ (no BENCHMARKS.md with --searches-only)")
        return
    write_json(OUT / "summary.json", {"settings": s, "rows": rows, "memory": mem})
    cmd = ("HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tune.py" + (" --quick" if args.quick else "")
           + "".join(f" --minutes-{k} {v:g}" for k, v in minutes.items())
           + (f" --sampler-seeds {args.sampler_seeds}" if seeds != [0] else ""))
    text = markdown(s, rows, mem, cmd)
    markdown_blocks.update_section(text, "tune")
    print(text, flush=True)
    log(f"wrote {markdown_blocks.BENCHMARKS_MD.relative_to(ROOT)} (section 'tune') and {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
