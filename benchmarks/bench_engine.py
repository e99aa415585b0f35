"""Before / after a structural change (issue 11: one trainer, checkpoints, layout moves): transferkit's own training
and extraction jobs of ``benchmarks/peers`` run on an earlier commit and on this working tree, alternating job by
job (before, after, before, after, ...) so that each pair is measured back to back under the same load.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_engine.py --before 5614cd9 [--jobs tk_digits,...] [--quick]

The earlier commit is checked out into a temporary git worktree and imported from there (``PYTHONPATH``); both
sides use this checkout's virtual environment, one fresh process per job, 1 thread. Writes the section between
``<!-- engine:start -->`` and ``<!-- engine:end -->`` of BENCHMARKS.md and the raw records to
``benchmarks/out/engine/results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "engine"
sys.path.insert(0, str(ROOT / "benchmarks"))
from markdown_blocks import update_section  # noqa: E402

JOBS = ("tk_digits", "tk_mnist", "tk_finetune", "tk_finetune_bf16", "extract_image", "extract_text")
LABELS = {"tk_digits": "EfficientNet-Lite0 fine-tune, digits 64 px, 3 epochs",
          "tk_mnist": "EfficientNet-Lite0 fine-tune, MNIST 64 px, 2 epochs",
          "tk_finetune": "MiniLM fine-tune, SpamAssassin (480 e-mails, 1 epoch), fp32",
          "tk_finetune_bf16": "MiniLM fine-tune, SpamAssassin, `--precision bf16`",
          "extract_image": "feature extraction, EfficientNet-Lite0 128 px (fastest engine)",
          "extract_text": "feature extraction, MiniLM (fastest engine)"}


def run(tree: Path, name: str, quick: bool, out_dir: Path) -> dict:
    out = out_dir / f"{name}.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, str(tree / "benchmarks" / "peers" / "job.py"), name, str(out), "--threads", "1"]
    with open(out_dir / f"{name}.log", "w", encoding="utf-8") as log, tempfile.TemporaryDirectory() as onnx:
        env["TRANSFERKIT_ONNX_CACHE"] = onnx
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + (["--quick"] if quick else []), env=env, cwd=tree, stdout=log,
                              stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
    rec = json.loads(out.read_text()) if out.exists() else {"ok": False, "error": f"exit {proc.returncode}"}
    rec["wall_s"] = wall
    return rec


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def fmt(v: float | None, d: int = 4) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def render(recs: dict, before: str, after: str, started: str, minutes: float) -> str:
    lines = ["## Engine refactor: before / after (issue 11)", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_engine.py --before {before}` "
             f"(run {started} UTC; {minutes:.1f} min). Before = commit {before} (two training loops, no checkpoints); "
             f"after = {after} (one `Trainer` with callbacks; these jobs write no run, so no checkpoints). Each job is the `benchmarks/peers` job of that commit, in "
             "its own process with 1 thread; the two sides ran back to back, job by job, on the same 2-core machine. "
             "One run each: the batch order is now drawn per (seed, epoch), so F1 differences are within seed noise "
             "(see the peers section for what one seed on these sets is worth).", "",
             "| job | macro-F1 before / after | throughput before / after | ratio after / before | wall s before / after |",
             "|---|---|---|---|---|"]
    for name, pair in recs.items():
        b, a = pair.get("before", {}), pair.get("after", {})
        tb, ta = b.get("throughput"), a.get("throughput")
        ratio = f"{ta / tb:.2f}x" if tb and ta else "-"
        unit = a.get("throughput_unit", b.get("throughput_unit", ""))
        lines.append(f"| {LABELS.get(name, name)} | {fmt(b.get('metric'))} / {fmt(a.get('metric'))} | "
                     f"{fmt(tb, 1)} / {fmt(ta, 1)} {unit} | {ratio} | {fmt(b.get('wall_s'), 1)} / "
                     f"{fmt(a.get('wall_s'), 1)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="the earlier commit")
    ap.add_argument("--jobs", default=",".join(JOBS))
    ap.add_argument("--quick", action="store_true", help="tiny jobs; a smoke test (writes nothing to BENCHMARKS.md)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from "
                    "benchmarks/out/engine/results.json (its run facts given as --started / --minutes)")
    ap.add_argument("--started", default=None)
    ap.add_argument("--after", default=None, help="with --render-only: the commit the after side was measured on")
    ap.add_argument("--minutes", type=float, default=0.0)
    ap.add_argument("--merge", action="store_true", help="keep the pairs of benchmarks/out/engine/results.json "
                    "that these --jobs do not re-measure")
    args = ap.parse_args()
    started, t0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), time.perf_counter()
    after = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "src")
                                                    else "")
    if args.render_only:
        recs = json.loads((OUT / "results.json").read_text())
        update_section(render(recs, args.before, args.after or after, args.started or started, args.minutes),
                       "engine")
        return 0
    old = OUT / "results.json"
    recs: dict = json.loads(old.read_text()) if args.merge and old.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "before"
        git("worktree", "add", "--detach", str(wt), args.before)
        (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")  # the data beside the checkout, as for ROOT
        try:
            for name in args.jobs.split(","):
                for side, tree in (("before", wt), ("after", ROOT)):
                    d = OUT / side
                    d.mkdir(parents=True, exist_ok=True)
                    rec = run(tree, name, args.quick, d)
                    recs.setdefault(name, {})[side] = rec
                    print(f"[engine] {name} {side}: F1 {rec.get('metric')}, throughput {rec.get('throughput')}, "
                          f"{rec['wall_s']:.1f} s", flush=True)
        finally:
            git("worktree", "remove", "--force", str(wt))
    OUT.mkdir(parents=True, exist_ok=True)
    recs = {n: recs[n] for n in JOBS if n in recs} | {n: r for n, r in recs.items() if n not in JOBS}
    (OUT / "results.json").write_text(json.dumps(recs, indent=1, default=str))
    if not args.quick:
        update_section(render(recs, args.before, after, started, (time.perf_counter() - t0) / 60), "engine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
