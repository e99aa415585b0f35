"""Feature-extraction throughput: transferkit's pipeline per engine vs bare forwards of the same model
(eager inference_mode, channels_last, torch.compile, ONNX Runtime on the same exported graph).

Pipeline = ``extract_features(backbone, Inputs(ds, backbone), batch, engine=...)``: batching (images: uint8 store,
resize, normalise; text: pre-tokenised, length-sorted, padded per batch) plus the engine. Bare = only the forward
over batches built beforehand, in the engine's own input format. Chunks of the data alternate between all variants; each variant's best round counts.
"""
from __future__ import annotations

import time
from typing import Any

from common import images, spam


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput(quick: bool, threads: int, modality: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.data import from_arrays
    from transferkit.features.extract import extract_features
    from transferkit.features.inputs import Inputs
    from transferkit.features.runtimes import get_runtime

    if modality == "image":
        d = images("digits", quick)
        n = 256 if quick else 512
        X, y = d["X"][:n], d["y"][:n]
        bb = create_backbone("packaged:efficientnet_lite0", image_size=128)
        ds, batch, engines = from_arrays(X, y, value_max=d["value_max"]), 64, ["eager", "onnx"]
        unit = "img/s"
    else:
        d = spam(quick)
        idx = d["test"][: (96 if quick else 256)]
        bb = create_backbone("packaged:minilm-l6", max_length=128)
        ds, batch, engines = from_arrays([d["texts"][i] for i in idx], d["y"][idx]), 32, ["eager", "onnx", "onnx-int8"]
        unit = "seq/s"
    if not quick and modality == "image":  # (compiling MiniLM for dynamic lengths takes minutes on 1 thread)
        engines.insert(1, "compiled")
    bb.eval()
    chunks = np.array_split(np.arange(len(ds)), 2 if quick else 4)
    parts = [Inputs(ds.subset(c), bb) for c in chunks]
    runtimes = {e: get_runtime(bb, e) for e in engines}
    setup = {}
    with torch.inference_mode():
        for e, rt in runtimes.items():  # warm-up: export / compile / first batch, and the parity check
            setup[e] = _time(lambda: extract_features(bb, parts[0], batch, progress=False, engine=rt))
    bare_batches = [[p.batch(b) for b in p.order(batch, shuffle=False)] for p in parts]
    # each engine's own input format, built beforehand (ONNX images take uint8 and normalise in the graph)
    bare_inputs = {e: [[rt.prepare(p, b) for b in p.order(batch, shuffle=False)] for p in parts]
                   for e, rt in runtimes.items()}
    if modality == "image":
        nchw = [[x.contiguous() for x in bs] for bs in bare_batches]
    best: dict[str, float] = {}
    rounds: dict[str, list[float]] = {}

    def note(name, n_items, seconds):
        rounds.setdefault(name, []).append(n_items / seconds)

    with torch.inference_mode():
        for ci, p in enumerate(parts):
            n_items = len(p)
            for e, rt in runtimes.items():
                note(f"pipeline {e}", n_items, _time(lambda: extract_features(bb, p, batch, progress=False, engine=rt)))
                if e == "eager":
                    note("bare eager", n_items, _time(lambda: [bb(b) for b in bare_batches[ci]]))
                    if modality == "image":
                        note("bare eager NCHW", n_items, _time(lambda: [bb(b) for b in nchw[ci]]))
                elif rt.fallback is None:
                    note(f"bare {e}", n_items, _time(lambda: [rt._run(b) for b in bare_inputs[e][ci]]))
    best = {k: max(v) for k, v in rounds.items()}
    fastest_bare = max((v, k) for k, v in best.items() if k.startswith("bare"))
    fastest_pipe = max((v, k) for k, v in best.items() if k.startswith("pipeline"))
    return {"metric": None, "unit": unit, "best": best, "rounds": rounds, "setup_s": setup,
            "engines": {e: rt.record() for e, rt in runtimes.items()}, "fastest_bare": fastest_bare[1],
            "fastest_pipeline": fastest_pipe[1], "ratio": fastest_pipe[0] / fastest_bare[0],
            "throughput": fastest_pipe[0], "throughput_unit": unit, "n": len(ds), "batch": batch,
            "model": bb.meta.spec, "size_or_length": 128}
