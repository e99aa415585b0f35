"""Feature-extraction engines: one frozen backbone run by eager PyTorch, ``torch.compile`` or ONNX Runtime.

``get_runtime(backbone, "onnx")`` wraps a backbone for inference. Every engine other than eager checks itself
against eager PyTorch on its first batch (largest absolute difference and cosine per row) and raises a
one-line ``ConfigError`` when they disagree; an engine that cannot be set up (no compiler, an operator the
exporter does not know) falls back to eager with a warning. ``Runtime.record()`` says what ran, for the run
record; ``engine_identity`` names it for the feature-cache key.

Engines: ``eager`` (the backbone as is; images are channels_last), ``compiled`` (``torch.compile``),
``onnx`` (``torch.onnx.export`` with dynamic batch and sequence length, cached on disk by weights hash,
run by ONNX Runtime's CPU provider with as many intra-op threads as torch), ``onnx-int8`` (the same
graph with dynamically quantised int8 MatMul weights, per channel: meant for text encoders).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones.base import Backbone
from ..errors import ConfigError
from ..registry import Registry
from .identity import default_cache_dir, weights_hash

log = logging.getLogger("transferkit")


@dataclass(frozen=True)
class Parity:
    """How one engine's outputs compare with eager PyTorch's on the same batch."""

    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    rows: int
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_outputs(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    """(max |ref - out|, min and mean row cosine) of two [N, D] arrays."""
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    out = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    if ref.shape != out.shape:
        return float("inf"), -1.0, -1.0
    diff = float(np.abs(ref - out).max()) if ref.size else 0.0
    num = (ref * out).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-30), np.where(np.abs(ref - out).max(1) == 0, 1.0, 0.0))
    return diff, float(cos.min(initial=1.0)), float(cos.mean()) if cos.size else 1.0


class Runtime:
    """Runs a backbone (or its source head) for inference. Subclasses override ``_setup`` and ``_run``."""

    name = "eager"
    # Parity tolerance against eager: largest |difference| relative to max(1, largest |eager output|),
    # and the smallest (and mean) row cosine.
    max_rel_diff = 1e-3
    min_cosine = 0.9999
    min_mean_cosine = 0.9999
    parity_rows = 16  # rows of the first batch compared with eager

    def __init__(self, backbone: Backbone, source_logits: bool = False) -> None:
        self.backbone = backbone
        self.source_logits = source_logits
        self.parity: Parity | None = None
        self.fallback: str | None = None
        self.setup_seconds = 0.0
        self._ready = False

    # -- what subclasses implement ------------------------------------------------------------------------
    def _setup(self, batch: Any) -> None:
        """Prepare the engine from an example batch (compile, export, open a session)."""

    def _run(self, batch: Any) -> torch.Tensor:
        return self.eager(batch)

    def prepare(self, inputs: Any, idx: Any) -> Any:
        """This engine's input for rows ``idx`` of ``inputs`` (an ``Inputs``): by default the backbone's batch
        (tensors only: a backbone never reads the raw texts)."""
        return inputs.batch(idx, texts=False)

    def to_eager(self, batch: Any) -> Any:
        """The eager backbone's input from a prepared batch (for the parity check and the fall-back)."""
        if isinstance(batch, torch.Tensor) and batch.dtype == torch.uint8:
            return self.backbone.preprocess(batch)
        return batch

    # -- shared behaviour ---------------------------------------------------------------------------------
    def eager(self, batch: Any) -> torch.Tensor:
        return self.backbone.source_logits(batch) if self.source_logits else self.backbone(batch)

    def __call__(self, batch: Any) -> torch.Tensor:
        if self._ready:
            return self.eager(self.to_eager(batch)) if self.fallback else self._run(batch)
        return self._first(batch)

    def _first(self, batch: Any) -> torch.Tensor:
        """Set up on the first batch, fall back to eager if that fails, then check parity against eager."""
        self._ready = True
        if self.name == "eager":
            return self.eager(self.to_eager(batch))
        t0 = time.perf_counter()
        try:
            self._setup(batch)
            out = self._run(batch)
        except Exception as e:  # noqa: BLE001 - any engine failure means: use eager instead
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
            reason = f"{type(e).__name__}: {first[0] if first else ''}"[:300]
            self.fallback = reason
            self.setup_seconds = time.perf_counter() - t0
            warnings.warn(f"Extraction engine '{self.name}' could not run backbone '{self.backbone.meta.spec}' "
                          f"({reason}); falling back to eager PyTorch.", RuntimeWarning, stacklevel=3)
            return self.eager(self.to_eager(batch))
        self.setup_seconds = time.perf_counter() - t0
        n = min(self.parity_rows, len(out))  # a slice of the first batch keeps eager's activation memory small
        head = {k: v[:n] for k, v in batch.items()} if isinstance(batch, dict) else batch[:n]
        try:
            self.parity = self._check(self.eager(self.to_eager(head)), out[:n])
        except ConfigError:
            self._ready = False  # checked again (and refused again) on the next call
            raise
        return out

    def _check(self, ref: torch.Tensor, out: torch.Tensor) -> Parity:
        r, o = ref.detach().float().numpy(), out.detach().float().numpy()
        diff, cmin, cmean = compare_outputs(r, o)
        scale = max(1.0, float(np.abs(r).max()) if r.size else 1.0)
        ok = diff <= self.max_rel_diff * scale and cmin >= self.min_cosine and cmean >= self.min_mean_cosine
        parity = Parity(diff, cmin, cmean, len(r), bool(ok))
        if not ok:
            raise ConfigError(
                f"Extraction engine '{self.name}' disagrees with eager PyTorch on backbone "
                f"'{self.backbone.meta.spec}' (max abs diff {diff:.3g}, min cosine {cmin:.4f}, mean cosine "
                f"{cmean:.4f}; allowed {self.max_rel_diff * scale:.3g} / {self.min_cosine} / "
                f"{self.min_mean_cosine}). Use --engine eager.")
        log.info("engine %s parity on %d rows: max abs diff %.3g, min cosine %.6f", self.name, len(r), diff, cmin)
        return parity

    def record(self) -> dict[str, Any]:
        """What ran: engine, identity, parity with eager, fallback reason, set-up time."""
        rec = {**engine_identity(self.name), "ran": "eager" if self.fallback else self.name,
               "parity": self.parity.to_dict() if self.parity else None, "fallback": self.fallback,
               "setup_seconds": round(self.setup_seconds, 3)}
        if hasattr(self, "exporter"):
            rec["exporter"] = self.exporter
        return rec


ENGINES: Registry[type[Runtime]] = Registry(
    "extraction engine", " Choose eager, compiled or onnx (onnx-int8 for text), e.g. --engine onnx.")
ENGINES.register("eager", "PyTorch eager mode (images channels_last); the reference")(Runtime)


@ENGINES.register("compiled", "torch.compile (inductor); falls back to eager with a warning if it cannot")
class CompiledRuntime(Runtime):
    name = "compiled"

    def _setup(self, batch: Any) -> None:
        fn = self.backbone.source_logits if self.source_logits else self.backbone.forward
        # Text batches change length every batch: compile for dynamic shapes once instead of recompiling.
        self._fn = torch.compile(fn, dynamic=isinstance(batch, dict) or None)

    def _run(self, batch: Any) -> torch.Tensor:
        return self._fn(batch)


class _ExportedImage(nn.Module):
    """uint8 images in (normalised inside the graph, so batches skip a float pass and two layout copies),
    the backbone's features (or source logits) out: what ONNX export traces."""

    def __init__(self, backbone: Backbone, source_logits: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.source_logits = source_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.backbone.preprocess
        x = (x.float() - pre.mean) / pre.std
        return self.backbone.source_logits(x) if self.source_logits else self.backbone(x)


class _ExportedText(nn.Module):
    """Token ids and attention mask in (the text collator's two keys), features out."""

    def __init__(self, backbone: Backbone, source_logits: bool = False) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone({"input_ids": input_ids, "attention_mask": attention_mask})


_TEXT_KEYS = ["input_ids", "attention_mask"]


def onnx_cache_dir() -> Path:
    """``$TRANSFERKIT_ONNX_CACHE``, else an ``onnx/`` folder inside the feature cache directory."""
    env = os.environ.get("TRANSFERKIT_ONNX_CACHE")
    if env:
        return Path(env)
    return default_cache_dir() / "onnx"


def _example(batch: Any) -> tuple[list[str] | None, tuple[torch.Tensor, ...]]:
    """Positional example inputs, made at least 2 wide in every dynamic axis (export specialises 0 and 1)."""
    if isinstance(batch, dict):
        if sorted(batch) != sorted(_TEXT_KEYS):
            raise ValueError(f"ONNX export takes text batches with keys {_TEXT_KEYS}, got {sorted(batch)}")
        keys = list(_TEXT_KEYS)
        xs = tuple(batch[k].clone() for k in keys)
        if xs[0].shape[1] < 2:
            xs = tuple(torch.cat([x, torch.zeros_like(x[:, :1])], 1) for x in xs)  # padding (mask 0)
    else:
        if batch.dtype != torch.uint8:
            raise ValueError("ONNX image export takes uint8 batches (see OnnxRuntime.prepare)")
        keys, xs = None, (batch.clone().contiguous(),)
    if xs[0].shape[0] < 2:
        xs = tuple(torch.cat([x, x]) for x in xs)
    return keys, xs


@dataclass(frozen=True)
class GraphSpec:
    """What ``torch.onnx.export`` needs besides the module: input names, example inputs (at least 2 wide in every
    dynamic axis: export specialises 0 and 1), each input's dynamic axes (axis -> dimension name; a name shared by
    inputs is one dimension), output names, and upper bounds of named dimensions (e.g. ``{"length": 512}``)."""

    inputs: list[str]
    examples: tuple[torch.Tensor, ...]
    axes: list[dict[int, str]]
    outputs: list[str]
    max_sizes: dict[str, int] = field(default_factory=dict)


def _export_torchscript(module: nn.Module, spec: GraphSpec, path: Path) -> None:
    axes = {n: dict(a) for n, a in zip(spec.inputs, spec.axes)}
    torch.onnx.export(module, spec.examples, str(path), input_names=spec.inputs, output_names=spec.outputs,
                      dynamic_axes=axes, dynamo=False, opset_version=17)


def _export_dynamo(module: nn.Module, spec: GraphSpec, path: Path) -> None:
    dims: dict[str, Any] = {}
    for name in {n for a in spec.axes for n in a.values()}:
        top = spec.max_sizes.get(name)
        dims[name] = torch.export.Dim(name, min=1, max=top) if top else torch.export.Dim(name, min=1)
    dyn = tuple({axis: dims[name] for axis, name in a.items()} for a in spec.axes)
    torch.onnx.export(module, spec.examples, str(path), input_names=spec.inputs, output_names=spec.outputs,
                      dynamic_shapes=dyn, dynamo=True, optimize=True, verbose=False, external_data=False)


_EXPORTERS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def _run_exporter(name: str, module: nn.Module, spec: GraphSpec, path: Path) -> None:
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        _EXPORTERS[name](module, spec, path)


def export_onnx(module: nn.Module, spec: GraphSpec, path: Path, prefer: str = "dynamo") -> str:
    """Export ``module`` (in eval mode) to ONNX at ``path``: with exporter ``prefer``, else with the other one.
    Returns the name of the exporter that worked ("dynamo" or "torchscript").

    The dynamo exporter (``torch.export``) made a graph that ran EfficientNet-Lite0 ~25% faster in ONNX Runtime
    here; the TorchScript one exports text encoders in 1-2 s instead of ~15 s with ~0.4 GB less memory and an
    equally fast graph.
    """
    other = next(n for n in _EXPORTERS if n != prefer)
    try:
        _run_exporter(prefer, module, spec, path)
        return prefer
    except Exception as e:  # noqa: BLE001 - try the other exporter before giving up
        log.info("ONNX export with %s failed (%s); trying %s", prefer, e, other)
    _run_exporter(other, module, spec, path)
    return other


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src``'s MatMul / Gemm weights (per channel; activations stay float and are
    quantised on the fly), written to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])


@ENGINES.register("onnx", "torch.onnx export (dynamic batch / length), run by ONNX Runtime on CPU")
class OnnxRuntime(Runtime):
    name = "onnx"
    quantize = False
    exporter = "cached"  # which torch.onnx exporter made the model ("cached": an earlier run did)

    def _setup(self, batch: Any) -> None:
        import onnxruntime as ort

        with torch.inference_mode(False):
            keys, xs = _example(batch)
        path = self._model_path(keys, xs)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._session.get_inputs()]
        self._keys = keys
        self.model_path = path

    def _model_path(self, keys: list[str] | None, xs: tuple[torch.Tensor, ...]) -> Path:
        """The exported (and maybe quantised) model, built once per weights / preprocessing / engine."""
        b = self.backbone
        parts = {"spec": b.meta.spec, "weights": weights_hash(b), "pre": b.describe_preprocessing(),
                 "source_logits": self.source_logits, "keys": keys, "format": 4,
                 "static": [list(x.shape[2:]) if keys is None else [] for x in xs], **engine_identity(self.name)}
        key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
        root = onnx_cache_dir()
        path = root / f"{key}.onnx"
        if path.exists():
            return path
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            fp32 = Path(tmp) / "model.onnx"
            self._export(keys, xs, fp32)
            final = fp32
            if self.quantize:
                final = Path(tmp) / "model.int8.onnx"
                quantize_int8(fp32, final)
            os.replace(final, path)
        return path

    def _export(self, keys: list[str] | None, xs: tuple[torch.Tensor, ...], path: Path) -> None:
        """Images: the dynamo exporter first, text: the TorchScript exporter first (see :func:`export_onnx`)."""
        module = (_ExportedImage if keys is None else _ExportedText)(self.backbone, self.source_logits).eval()
        if keys is None:
            spec = GraphSpec(["x"], xs, [{0: "batch"}], ["features"])
        else:
            spec = GraphSpec(list(keys), xs, [{0: "batch", 1: "length"} for _ in keys], ["features"],
                             {"length": max(int(self.backbone.meta.max_length or 512), 2)})
        self.exporter = export_onnx(module, spec, path, prefer="dynamo" if keys is None else "torchscript")

    def prepare(self, inputs: Any, idx: Any) -> Any:
        """Images: the uint8 batch at the backbone's size (the graph normalises); text: padded token ids."""
        from ..backbones.base import ImagePreprocessor

        pre = self.backbone.preprocess
        if isinstance(pre, ImagePreprocessor) and getattr(inputs, "images", None) is not None:
            return pre.resize_uint8(inputs.images.batch(idx))
        return inputs.batch(idx, texts=False)

    def _run(self, batch: Any) -> torch.Tensor:
        if self._keys is None:
            feeds = {self._names[0]: batch.contiguous().numpy()}
        else:
            feeds = {n: batch[k].numpy() for n, k in zip(self._names, self._keys)}
        return torch.from_numpy(self._session.run(None, feeds)[0])


@ENGINES.register("onnx-int8", "onnx with dynamic int8 quantisation of MatMul weights (text encoders)")
class OnnxInt8Runtime(OnnxRuntime):
    name = "onnx-int8"
    quantize = True
    # int8 weights change the features a little: checked by cosine only (the bar: cosine >= 0.98).
    max_rel_diff = float("inf")
    min_cosine = 0.95
    min_mean_cosine = 0.98


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's and quantiser's progress prints and warnings."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def engine_identity(engine: str) -> dict[str, Any]:
    """What names an engine's features in the cache key: its name and the versions that shape its output."""
    cls = ENGINES.get(engine)
    ident: dict[str, Any] = {"engine": cls.name, "torch": torch.__version__.split("+")[0]}
    if issubclass(cls, OnnxRuntime):
        try:
            import onnxruntime

            ident["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            ident["onnxruntime"] = None
        ident["quantize"] = "int8-dynamic-per-channel" if cls.quantize else None
    return ident


# The last few runtimes, per (backbone object, engine, head, weights state): exporting or compiling happens
# once per fit, and a backbone whose weights changed in place (fine-tuning) gets a fresh one. Bounded, so
# that backbones of finished fits are not kept alive.
_RUNTIMES: OrderedDict[tuple, Runtime] = OrderedDict()
_MAX_RUNTIMES = 4


def _weights_state(module: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in module.state_dict().values())


def get_runtime(backbone: Backbone, engine: str = "eager", source_logits: bool = False) -> Runtime:
    """The (memoised) runtime of ``engine`` for ``backbone``.

    Raises:
        ConfigError: unknown engine name (with a suggestion).
    """
    cls = ENGINES.get(engine)
    if cls is Runtime:
        return Runtime(backbone, source_logits)
    key = (id(backbone), engine, source_logits, _weights_state(backbone))
    rt = _RUNTIMES.get(key)
    if rt is None or rt.backbone is not backbone:
        for k in [k for k in _RUNTIMES if k[:3] == key[:3]]:
            del _RUNTIMES[k]  # the same backbone with older weights
        rt = _RUNTIMES[key] = cls(backbone, source_logits)
        while len(_RUNTIMES) > _MAX_RUNTIMES:
            _RUNTIMES.popitem(last=False)
    _RUNTIMES.move_to_end(key)
    return rt


def clear_runtimes() -> None:
    """Forget every memoised runtime (and the backbones they hold)."""
    _RUNTIMES.clear()
