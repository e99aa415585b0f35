"""Issue 14 benchmark: `transferkit serve` under load, on this machine's CPUs.

Builds two small runs (cached under the output folder): an EfficientNet-Lite0 linear probe on scikit-learn's digits
(``packaged:efficientnet_lite0``) and a MiniLM linear probe on SpamAssassin e-mails (``packaged:minilm-l6``). For each
run it starts the real server (``transferkit serve``, one uvicorn process, a subprocess) with micro-batching on and
with ``--no-batching``, and measures requests/s and p50/p95/p99 latency of single-input requests at concurrency 1, 8
and 32, next to the bare engine's throughput (``Predictor.outputs`` on batches of 1 and 32, same thread count, no
HTTP). Then a soak (concurrency 8, batching on, 2 minutes) counts 5xx and transport errors, and 1,000 fuzzed
requests (malformed JSON, wrong types, huge and empty bodies, non-images, wrong modality, bad base64, bad multipart,
unsupported content types, bomb headers) must all get a 4xx, with ``/readyz`` still 200 afterwards.

All traffic goes to 127.0.0.1 only; every phase is bounded in requests and in seconds. The load comes from one
client process per 8 connections (a single Python client saturates first), on the same machine as the server, so
its CPU use counts against the server's.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serve.py [--threads N] [--duration 10] [--soak 120]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serve.py --quick   # smoke test: small runs, short phases

Writes the block between <!-- serve:start --> and <!-- serve:end --> of BENCHMARKS.md and the raw records to
benchmarks/out/serve/results.json. ``--quick`` writes only benchmarks/out/serve-quick/ (never BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import cli_command, offline_env  # noqa: E402
from markdown_blocks import update_section

HOST = "127.0.0.1"  # the only address this script sends to
SPAM = ROOT.parent / "shared" / "data" / "spamassassin.jsonl.gz"
CONCURRENCY = (1, 8, 32)
CLIENT_CONNECTIONS = 8  # connections per client process


# -- runs ----------------------------------------------------------------------------------------------------------
def build_runs(out: Path, quick: bool) -> dict[str, Path]:
    """The image and text runs (fitted once, then reused from ``out/runs``)."""
    import numpy as np
    from sklearn.datasets import load_digits

    from transferkit.config import FitConfig
    from transferkit.data import from_arrays
    from transferkit.pipeline import fit

    runs_dir = out / "runs"
    runs = {"image": runs_dir / "lite0-digits", "text": runs_dir / "minilm-spam"}
    if not (runs["image"] / "run.json").exists():
        d = load_digits()
        n = 300 if quick else len(d.target)
        cfg = FitConfig(backbone="packaged:efficientnet_lite0", strategy="linear-probe", image_size=32 if quick else 64,
                        runs_dir=str(runs_dir), name=runs["image"].name)
        fit(cfg, train=from_arrays(d.images[:n], d.target[:n]), progress=False)
    if not (runs["text"] / "run.json").exists():
        records = spam_records(120 if quick else 480)
        cfg = FitConfig(backbone="packaged:minilm-l6", strategy="linear-probe", runs_dir=str(runs_dir),
                        name=runs["text"].name)
        fit(cfg, train=from_arrays([mail_text(r) for r in records], np.array([r["label"] for r in records])),
            progress=False)
    return runs


def spam_records(n: int) -> list[dict[str, Any]]:
    if not SPAM.exists():
        raise SystemExit(f"bench_serve: {SPAM} is missing (the shared data folder beside the repo).")
    rng = random.Random(0)
    with gzip.open(SPAM, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    rng.shuffle(records)
    ham = [r for r in records if r["label"] == "ham"][: n // 2]
    spam = [r for r in records if r["label"] == "spam"][: n // 2]
    return ham + spam


def mail_text(r: dict[str, Any]) -> str:
    return f"{r['subject']}\n{r['body']}"[:1000]


# -- request bodies ------------------------------------------------------------------------------------------------
def png(a) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def image_bodies(n: int = 64) -> list[bytes]:
    """Held-out digits as 64x64 PNGs in JSON (one image per request)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for a in d.images[-n:]:
        im = Image.fromarray((a * (255 / 16)).astype(np.uint8)).resize((64, 64), Image.Resampling.NEAREST)
        out.append(json.dumps({"images": [base64.b64encode(png(np.asarray(im))).decode()]}).encode())
    return out


def text_bodies(n: int = 64) -> list[bytes]:
    return [json.dumps({"texts": [mail_text(r)]}).encode() for r in spam_records(2 * n)[-n:]]


# -- the server ------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``transferkit serve RUN`` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, run: Path, threads: int, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = cli_command("serve", run, "--host", HOST, "--port", self.port, "--max-inflight", 256, *flags)
        self.log = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=offline_env(threads),
                                     cwd=ROOT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench_serve: the server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"bench_serve: the server was not ready after {timeout} s; see {self.log.name}")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kb / 1024

    def batches(self) -> tuple[float, float]:
        """(model calls, inputs) so far, from /metrics."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for fam in text_string_to_metric_families(text):
            if fam.name == "transferkit_serve_batch_size":
                values = {s.name: s.value for s in fam.samples}
                return values["transferkit_serve_batch_size_count"], values["transferkit_serve_batch_size_sum"]
        return 0.0, 0.0

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


# -- load ------------------------------------------------------------------------------------------------------------
async def drive(url: str, bodies: list[bytes], concurrency: int, duration: float, max_requests: int,
                start_at: float | None = None) -> dict:
    """Closed loop from this process: ``concurrency`` clients each send the next body as soon as their last answer
    came, from wall-clock time ``start_at`` (now if None) for ``duration`` seconds or ``max_requests`` requests."""
    import httpx

    latencies: list[float] = []
    statuses: Counter = Counter()
    errors, sent = 0, 0
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client.get("/healthz") for _ in range(concurrency)))  # open the connections
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + duration

        async def worker(w: int) -> None:
            nonlocal errors, sent
            i = w
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", content=bodies[i % len(bodies)], headers=headers)
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[str(r.status_code)] += 1
                i += concurrency

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "statuses": dict(statuses), "errors": errors, "wall_s": wall}


def summarise(parts: list[dict], concurrency: int) -> dict:
    """One load cell from the raw records of its client processes."""
    import numpy as np

    latencies = [x for p in parts for x in p["latencies"]]
    statuses: Counter = Counter()
    for p in parts:
        statuses.update(p["statuses"])
    wall = max(p["wall_s"] for p in parts)
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    pct = {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)}
    return {"concurrency": concurrency, "clients": len(parts), "requests": len(latencies), "wall_s": round(wall, 3),
            "rps": round(statuses["200"] / wall, 2), **pct, "statuses": dict(sorted(statuses.items())),
            "transport_errors": sum(p["errors"] for p in parts)}


async def load(url: str, bodies: list[bytes], concurrency: int, duration: float, max_requests: int) -> dict:
    """A load cell driven from this process alone."""
    return summarise([await drive(url, bodies, concurrency, duration, max_requests)], concurrency)


def load_from_processes(url: str, modality: str, concurrency: int, duration: float, max_requests: int) -> dict:
    """A load cell driven by ceil(concurrency / 8) client processes that start together (one Python client
    process tops out near 100 requests/s on this machine, and more so with many connections)."""
    n = -(-concurrency // CLIENT_CONNECTIONS)
    shares = [concurrency // n + (i < concurrency % n) for i in range(n)]
    start_at = time.time() + 5.0  # every client has loaded its bodies and opened its connections by then
    procs = [subprocess.Popen([sys.executable, __file__, "--client", url, modality, str(c), str(duration),
                               str(max_requests // n), str(start_at)], stdout=subprocess.PIPE, cwd=ROOT, text=True)
             for c in shares]
    parts = []
    for p in procs:
        out, _ = p.communicate(timeout=duration + 300)
        parts.append(json.loads(out.strip().splitlines()[-1]))
    return summarise(parts, concurrency)


def client_main(argv: list[str]) -> int:
    """``--client URL MODALITY CONCURRENCY DURATION MAX_REQUESTS START_AT``: one client process of a load cell."""
    url, modality, c, duration, max_requests, start_at = argv
    if not url.startswith(f"http://{HOST}:"):
        raise SystemExit(f"bench_serve: refusing to send traffic to {url} (only {HOST})")
    bodies = image_bodies() if modality == "image" else text_bodies()
    print(json.dumps(asyncio.run(drive(url, bodies, int(c), float(duration), int(max_requests), float(start_at)))))
    return 0


def measure(server: Server, modality: str, duration: float, max_requests: int) -> list[dict]:
    rows = []
    for c in CONCURRENCY:
        load_from_processes(server.url, modality, c, min(duration, 2.0), 2 * c)  # warm the server up
        calls0, items0 = server.batches()
        rec = load_from_processes(server.url, modality, c, duration, max_requests)
        calls1, items1 = server.batches()
        rec["mean_batch"] = round((items1 - items0) / max(1.0, calls1 - calls0), 2)
        rows.append(rec)
        print(f"    concurrency {c:>2}: {rec['rps']:8.1f} req/s  p50 {rec['p50_ms']:7.1f} ms  "
              f"p99 {rec['p99_ms']:7.1f} ms  mean batch {rec['mean_batch']}", flush=True)
    return rows


def bare_engine(run: Path, modality: str, threads: int, duration: float) -> dict[str, float]:
    """Inputs/s of the model alone (``Predictor.outputs``, texts tokenised inside) at batch 1 and 32."""
    import numpy as np
    import torch

    from transferkit.serve import Predictor

    torch.set_num_threads(threads)
    p = Predictor(run)
    if modality == "image":
        s = p.preprocess.size
        rng = np.random.default_rng(0)
        pool = [rng.integers(0, 255, (3, s, s), dtype=np.uint8) for _ in range(32)]
    else:
        pool = [json.loads(b)["texts"][0] for b in text_bodies(32)]
    p.warm_up()
    out = {}
    for batch in (1, 32):
        p.outputs(pool[:batch])
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration:
            p.outputs(pool[:batch])
            n += batch
        out[f"batch{batch}_per_s"] = round(n / (time.perf_counter() - t0), 1)
    return out


async def soak(url: str, bodies: list[bytes], seconds: float) -> dict:
    rec = await load(url, bodies, 8, seconds, max_requests=1_000_000)
    five = sum(v for k, v in rec["statuses"].items() if k.startswith("5"))
    return {**rec, "seconds": seconds, "5xx": five}


# -- fuzz ------------------------------------------------------------------------------------------------------------
def png_declaring(width: int, height: int) -> bytes:
    import numpy as np

    data = bytearray(png(np.zeros((1, 1), dtype=np.uint8)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def fuzz_cases(n: int, modality: str, seed: int) -> list[tuple[str, bytes, str]]:
    """``n`` invalid requests (kind, body, content type) for a server of ``modality``; a few huge ones at most."""
    rng = random.Random(seed)
    other = "texts" if modality == "image" else "images"
    key = "images" if modality == "image" else "texts"
    junk = lambda k: bytes(rng.getrandbits(8) for _ in range(k))
    b64 = lambda b: base64.b64encode(b).decode()
    top = lambda: rng.choice([None, True, 3, -1.5, "x", [], {}, {"a": [None]}, 1e308])  # never a list of strings
    item = lambda: rng.choice([None, True, 3, -1.5, [], {}, [1, 2], ["x"], 1e308])  # never a string
    makers = {
        "malformed JSON": lambda: (rng.choice([b"{", b"[1,", b'{"texts": [', b"nul", b'{"a":}', junk(40)]), "json"),
        "not an object": lambda: (json.dumps(rng.choice([[1], "texts", 3, None])).encode(), "json"),
        "wrong types": lambda: (json.dumps({key: rng.choice([top(), [item()], ["ok", item()]])}).encode(), "json"),
        "bad top_k": lambda: (json.dumps({"texts": ["x"], "images": ["x"]} if rng.random() < 0.3
                                         else {key: ["eA=="], "top_k": rng.choice([0, -2, "a", 2.5, [], 10**6, True])}
                                         ).encode(), "json"),
        "unknown field": lambda: (json.dumps({rng.choice(["text", "image", "inputs", "x"]): ["a"]}).encode(), "json"),
        "empty body": lambda: (b"", rng.choice(["json", "multipart/form-data; boundary=b"])),
        "huge body": lambda: (b"[" + b"1," * (11 << 19) + b"1]", "json"),  # 11 MiB > the 10 MB default
        "deep nesting": lambda: (b"[" * 200_000, "json"),
        "too many inputs": lambda: (json.dumps({key: ["eA=="] * 65}).encode(), "json"),
        "wrong modality": lambda: (json.dumps({other: ["aGVsbG8=" if other == "images" else "hello"]}).encode(),
                                   "json"),
        "bad base64": lambda: (json.dumps({"images": [rng.choice(["!!!", "abc", "a===", "data:image/png;base64,%"])]}
                                          ).encode(), "json"),
        "non-image bytes": lambda: (json.dumps({"images": [b64(junk(rng.randint(1, 400)))]}).encode(), "json"),
        "bomb header": lambda: (json.dumps({"images": [b64(png_declaring(40_000, 40_000))]}).encode(), "json"),
        "bad multipart": lambda: (b"--b\r\nContent-Disposition: form-data\r\n\r\n" + junk(50), "multipart"),
        "unsupported content type": lambda: (b"\x80\x04\x95" + junk(20), rng.choice(
            ["application/x-python-pickle", "text/plain", "application/octet-stream", "image/png", ""])),
    }
    kinds = [k for k in makers if k != "huge body"]
    cases = []
    for i in range(n):
        kind = "huge body" if i % 100 == 99 else rng.choice(kinds)  # at most n/100 huge bodies (11 MiB each)
        body, ctype = makers[kind]()
        ctype = {"json": "application/json", "multipart": "multipart/form-data; boundary=b"}.get(ctype, ctype)
        cases.append((kind, body, ctype))
    return cases


async def huge_body(url: str, size: int) -> tuple[int, bool]:
    """Send only the headers and 64 KiB of a ``size``-byte body; the server must answer 413 without the rest."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"POST /v1/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode() + b"[" + b"1," * (32 << 10))
        await writer.drain()
        status = int((await asyncio.wait_for(reader.readline(), 30)).split()[1])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length"))
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 30))
        return status, status == 413 and "error" in body
    finally:
        writer.close()


async def fuzz(url: str, cases: list[tuple[str, bytes, str]]) -> dict:
    import httpx

    statuses: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    bad: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        sem = asyncio.Semaphore(8)

        async def one(kind: str, body: bytes, ctype: str) -> None:
            async with sem:
                try:
                    if kind == "huge body":  # the answer comes before the body is sent: read it from a raw socket
                        status, ok = await huge_body(url, len(body))
                    else:
                        headers = {"content-type": ctype} if ctype else {}
                        r = await client.post("/v1/predict", content=body, headers=headers)
                        status, ok = r.status_code, 400 <= r.status_code < 500 and "error" in r.json()
                except (httpx.HTTPError, OSError, ValueError) as e:
                    status, ok = type(e).__name__, False
            statuses[str(status)] += 1
            by_kind.setdefault(kind, Counter())[str(status)] += 1
            if not ok and len(bad) < 20:
                bad.append({"kind": kind, "status": status, "body": body[:80].decode("latin-1")})

        await asyncio.gather(*(one(*c) for c in cases))
        ready = (await client.get("/readyz")).status_code
    return {"requests": len(cases), "statuses": dict(sorted(statuses.items())), "not_4xx": bad,
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())}, "readyz_after": ready}


# -- report ----------------------------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    env = res["environment"]
    intro = (f"One uvicorn process per run on this machine ({env['cpus']} CPUs, {env['threads']} torch threads, torch "
             f"{env['torch']}); the load (httpx, closed loop, one input per request, one client process per 8 "
             "connections) runs on the same CPUs. "
             f"{env['duration_s']:g} s per cell. Bare engine: `Predictor.outputs` in-process, no HTTP (text includes "
             "tokenising). `mean batch` = inputs per model call, read from the server's `/metrics`.")
    lines = ["## Serving: `transferkit serve` (issue 14)", "", intro, "",
             "| run | batching | concurrency | req/s | p50 ms | p95 ms | p99 ms | mean batch | non-200 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["runs"].values():
        for mode in ("on", "off"):
            for row in r[f"batching_{mode}"]:
                non200 = row["requests"] - row["statuses"].get("200", 0) + row["transport_errors"]
                lines.append(f"| {r['label']} | {mode} | {row['concurrency']} | {row['rps']:.1f} | {row['p50_ms']:.1f} "
                             f"| {row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['mean_batch']:.2f} | {non200} |")
    lines += ["", "| run | bare engine, batch 1 (inputs/s) | bare engine, batch 32 (inputs/s) |", "|---|---:|---:|"]
    for r in res["runs"].values():
        lines.append(f"| {r['label']} | {r['bare']['batch1_per_s']:.1f} | {r['bare']['batch32_per_s']:.1f} |")
    s, f = res["soak"], res["fuzz"]
    four = sum(v for k, v in f["statuses"].items() if k.startswith("4"))
    soak = (f"Soak ({s['run']}, concurrency 8, batching on, {s['seconds']:g} s): {s['requests']} requests, "
            f"{s['rps']:.1f} req/s, p99 {s['p99_ms']:.1f} ms, **{s['5xx']} 5xx**, {s['transport_errors']} transport "
            f"errors; server RSS {s['rss_mb_before']:.0f} -> {s['rss_mb_after']:.0f} MB.")
    fuzz = (f"Fuzz: {f['requests']} invalid requests (malformed JSON, wrong types, huge / empty bodies, non-images, "
            "wrong modality, bad base64, bad multipart, unsupported content types, bomb headers) over both servers: "
            f"{four} got a 4xx, **{f['requests'] - four} did not**; statuses {f['statuses']}; `/readyz` afterwards: "
            f"{f['readyz_after']}.")
    again = ("Reproduce: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serve.py` (raw numbers: "
             "`benchmarks/out/serve/results.json`).")
    lines += ["", soak, "", fuzz, "", again]
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--client"]:
        return client_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small runs, short phases; no BENCHMARKS.md")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of server and engine")
    ap.add_argument("--duration", type=float, help="seconds per load cell (default 10; quick 2)")
    ap.add_argument("--soak", type=float, help="soak seconds (default 120; quick 10)")
    ap.add_argument("--fuzz", type=int, help="fuzzed requests (default 1000; quick 200)")
    args = ap.parse_args()
    duration = args.duration or (2.0 if args.quick else 10.0)
    soak_s = args.soak or (10.0 if args.quick else 120.0)
    n_fuzz = args.fuzz or (200 if args.quick else 1000)
    max_requests = 2_000 if args.quick else 20_000
    out = ROOT / "benchmarks" / "out" / ("serve-quick" if args.quick else "serve")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRANSFERKIT_ONNX_CACHE", str(out / "onnx"))

    import torch

    t_start = time.perf_counter()
    print("building runs ...", flush=True)
    runs = build_runs(out, args.quick)
    bodies = {"image": image_bodies(), "text": text_bodies()}
    labels = {"image": "EfficientNet-Lite0, digits", "text": "MiniLM-L6, SpamAssassin"}
    res: dict[str, Any] = {"environment": {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                                           "duration_s": duration, "quick": args.quick}, "runs": {}}
    fuzz_results = []
    for modality, run in runs.items():
        print(f"{labels[modality]}: bare engine ...", flush=True)
        rec: dict[str, Any] = {"label": labels[modality], "run": str(run),
                               "bare": bare_engine(run, modality, args.threads, duration)}
        print(f"  {rec['bare']}", flush=True)
        for mode, flags in (("on", ()), ("off", ("--no-batching",))):
            print(f"  batching {mode}:", flush=True)
            server = Server(run, args.threads, out / f"server-{modality}-{mode}.log", *flags)
            try:
                server.wait_ready()
                rec[f"batching_{mode}"] = measure(server, modality, duration, max_requests)
                if mode == "on":
                    print(f"  fuzz ({n_fuzz // 2} requests) ...", flush=True)
                    fuzz_results.append(asyncio.run(fuzz(server.url, fuzz_cases(n_fuzz // 2, modality, seed=len(
                        fuzz_results)))))
                    if modality == "text":
                        print(f"  soak ({soak_s:g} s) ...", flush=True)
                        before = server.rss_mb()
                        s = asyncio.run(soak(server.url, bodies[modality], soak_s))
                        res["soak"] = {**s, "run": labels[modality], "rss_mb_before": before,
                                       "rss_mb_after": server.rss_mb()}
            finally:
                rec[f"exit_code_{mode}"] = server.stop()
        res["runs"][modality] = rec
    statuses: Counter = Counter()
    for f in fuzz_results:
        statuses.update(f["statuses"])
    res["fuzz"] = {"requests": sum(f["requests"] for f in fuzz_results), "statuses": dict(sorted(statuses.items())),
                   "readyz_after": max(f["readyz_after"] for f in fuzz_results),
                   "not_4xx": [b for f in fuzz_results for b in f["not_4xx"]],
                   "by_kind": [f["by_kind"] for f in fuzz_results]}
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "results.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    text = markdown(res)
    (out / "serve.md").write_text(text + "\n", encoding="utf-8")
    if not args.quick:
        update_section(text, "serve")
    print(text)
    print(f"\nwrote {out / 'results.json'}" + ("" if args.quick else " and BENCHMARKS.md"))
    bad = res["fuzz"]["not_4xx"] or res["soak"]["5xx"] or res["fuzz"]["readyz_after"] != 200
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
