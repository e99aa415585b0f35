"""Broken inputs for transferkit's CLI and Python API, as hypothesis strategies, and the one way to run them.

Shared by the fuzz tests (``tests/fuzz/test_fuzz_inputs.py``, a few dozen examples per family) and the long fuzz
benchmark (``benchmarks/bench_fuzz.py``, thousands). A :class:`Case` is plain data: files to write under a fresh
folder, symlinks and FIFOs, and either CLI arguments or a Python API call. :func:`run_case` runs it in-process
with a time limit and reports an :class:`Outcome`: a clean result (exit 0), a clean error (exit 2 and exactly one
``transferkit: error:`` line; for the API a ``DataError`` / ``ConfigError``), or a failure (a traceback, another
exception or exit code, a hang, a half-written run folder).

Families: ``table`` (CSV / TSV / JSONL / JSON / Parquet, plain or gzipped, damaged), ``images`` (class folders with
bad files, symlink loops, FIFOs, decompression-bomb headers), ``config`` (YAML ``--config`` files), ``predict``
(``predict`` / ``evaluate`` of a fitted run on damaged data) and ``arrays`` (``from_arrays`` + ``fit``).
Every fit takes the fast path: ``--strategy classical`` with ``classical:tfidf`` (text) or ``classical:pixels``
(images).
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import signal
import struct
import sys
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from PIL import Image

FAMILIES = ("table", "images", "config", "predict", "arrays")
TEXT_FIT = ["--backbone", "classical:tfidf", "--strategy", "classical"]
IMAGE_FIT = ["--backbone", "classical:pixels", "--strategy", "classical"]
RUN_NAME = "run"
WORDS = ("offer", "meeting", "free", "report", "winner", "schedule", "money", "project", "click", "budget",
         "prize", "agenda", "café", "naïve", "日本語", "emoji😀", "quote\"d", "comma,here", "tab\there",
         "new\nline")
CLASSES = ("spam", "ham", "other", "Ünïcode", "1", "2.5", "with space", "")


# ---------------------------------------------------------------------------------------------------------
# cases and outcomes
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One generated input. ``{root}`` in arguments and link targets stands for the case's folder,
    ``{text_run}`` / ``{image_run}`` for runs fitted beforehand (see :func:`fit_reference_runs`)."""

    family: str
    what: str
    files: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    fifos: tuple[str, ...] = ()
    argv: list[str] = field(default_factory=list)
    api: tuple[str, tuple[Any, ...]] | None = None  # (function name in API_CALLS, arguments)
    writes: tuple[str, ...] = ()  # run folders (relative) that must be complete on success and absent on failure
    outputs: tuple[str, ...] = ()  # files (relative) that must not exist after a failure

    def __repr__(self) -> str:  # hypothesis prints this on failure
        return f"Case({self.family}: {self.what}; argv={self.argv}; api={self.api and self.api[0]})"


@dataclass
class Outcome:
    kind: str                   # "result", "error", "traceback", "bad-exit", "hang", "half-written"
    code: int | None = None
    error: str = ""             # the one-line error (CLI) or the exception's text (API)
    detail: str = ""            # the traceback, the stray stderr, or what was left behind
    seconds: float = 0.0
    rss_growth_mb: float = 0.0

    @property
    def clean(self) -> bool:
        return self.kind in ("result", "error")


class CaseTimeout(BaseException):
    """Raised by :func:`time_limit` (a BaseException, so that no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`CaseTimeout` after ``seconds`` (SIGALRM; main thread only)."""
    def _fire(signum, frame):
        raise CaseTimeout(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in subs.items():
            value = value.replace("{" + k + "}", v)
    return value


def materialise(case: Case, root: Path) -> None:
    """Write the case's files, symlinks and FIFOs under ``root``."""
    subs = {"root": str(root)}
    for rel, data in case.files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for rel, target in case.links.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(_fill(target, subs), p)
    for rel in case.fifos:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(p)


def _leftovers(case: Case, root: Path, ok: bool) -> list[str]:
    """Run folders left half-written: a hidden ``.NAME.partial``, a missing run after success or a run after
    a failure."""
    bad = []
    for rel in case.writes:
        final = root / rel
        partial = final.parent / f".{final.name}.partial"
        if partial.exists():
            bad.append(f"{partial} left behind")
        if ok and not final.is_dir():
            bad.append(f"{final} missing after success")
        if not ok and final.exists():
            bad.append(f"{final} written although the command failed")
    bad += [f"{root / rel} written although the command failed" for rel in case.outputs
            if not ok and (root / rel).exists()]
    bad += [f"{p} left behind" for p in root.rglob("*.tmp")]
    return bad


def _stream() -> io.TextIOWrapper:
    """A text stream that encodes like a UTF-8 terminal (strict), so unencodable output fails as it would."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="")


def _read(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return stream.buffer.getvalue().decode("utf-8", "replace")


def _run_cli(case: Case, subs: dict[str, str]) -> Outcome:
    from transferkit.cli.main import main

    out, err = _stream(), io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", newline="")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([_fill(a, subs) for a in case.argv])
    except CaseTimeout:
        raise
    except BaseException:  # noqa: BLE001 - any escape from main is a finding
        return Outcome("traceback", None, "", traceback.format_exc())
    text = _read(err)
    lines = [ln for ln in text.splitlines() if ln.startswith("transferkit: error:")]
    if "Traceback" in text:
        return Outcome("traceback", code, "", text)
    if code == 0:
        return Outcome("result", 0, "", text) if not lines else Outcome("bad-exit", 0, lines[0], text)
    if code == 2 and len(lines) == 1:
        return Outcome("error", 2, lines[0], text)
    return Outcome("bad-exit", code, lines[0] if lines else "", text)


def _run_api(case: Case, subs: dict[str, str]) -> Outcome:
    from transferkit.errors import ConfigError, DataError

    name, args = case.api
    try:
        API_CALLS[name](*[_fill(a, subs) for a in args])
    except CaseTimeout:
        raise
    except (DataError, ConfigError) as e:
        msg = str(e)
        return Outcome("error", 2, msg) if msg and "\n" not in msg else Outcome("bad-exit", 2, msg, "multi-line")
    except BaseException:  # noqa: BLE001 - anything else escaping the API is a finding
        return Outcome("traceback", None, "", traceback.format_exc())
    return Outcome("result", 0)


def run_case(case: Case, root: Path, runs: dict[str, str] | None = None, via: str = "cli",
             timeout: float = 60.0) -> Outcome:
    """Materialise ``case`` under ``root`` (an empty folder) and run it in-process ``via`` the CLI or the API."""
    import time

    root.mkdir(parents=True, exist_ok=True)
    materialise(case, root)
    subs = {"root": str(root), **(runs or {})}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:  # relative paths in a case (a YAML 'val: .') resolve inside its folder, never in the checkout
        with time_limit(timeout), contextlib.chdir(root):
            outcome = _run_cli(case, subs) if via == "cli" else _run_api(case, subs)
    except CaseTimeout as e:
        outcome = Outcome("hang", None, "", str(e))
    outcome.seconds = time.perf_counter() - t0
    outcome.rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    checked = via == "cli" or case.api[0] != "load_path"  # load_path writes nothing
    left = _leftovers(case, root, outcome.kind == "result") if outcome.clean and checked else []
    if left:
        outcome = Outcome("half-written", outcome.code, outcome.error, "; ".join(left), outcome.seconds,
                          outcome.rss_growth_mb)
    return outcome


# ---------------------------------------------------------------------------------------------------------
# the Python API calls a case may make
# ---------------------------------------------------------------------------------------------------------
def _api_load(path: str, *flags: Any) -> None:
    from transferkit.data import Columns, load_path

    task = "regression" if "regression" in flags else "classification"
    load_path(path, Columns(), strict="strict" in flags, task=task)


def _api_fit_path(path: str, backbone: str, runs_dir: str, *flags: Any) -> None:
    from transferkit.config import FitConfig
    from transferkit.pipeline import fit

    task = "regression" if "regression" in flags else "classification"
    fit(FitConfig(train=path, backbone=backbone, strategy="classical", runs_dir=runs_dir, name=RUN_NAME, task=task,
                  strict="strict" in flags), progress=False)


def _api_config(path: str, train: str, runs_dir: str) -> None:
    from transferkit.config import FitConfig
    from transferkit.pipeline import fit

    cfg = FitConfig.from_yaml(path)
    fit(cfg.updated(train=train, backbone="classical:tfidf", strategy="classical", runs_dir=runs_dir,
                    name=RUN_NAME, num_threads=1), progress=False)


def _api_arrays(X: Any, y: Any, value_max: Any, runs_dir: str) -> None:
    from transferkit.config import FitConfig
    from transferkit.data import from_arrays
    from transferkit.pipeline import fit

    ds = from_arrays(X, y, value_max=value_max)
    backbone = "classical:tfidf" if ds.modality == "text" else "classical:pixels"
    fit(FitConfig(backbone=backbone, strategy="classical", runs_dir=runs_dir, name=RUN_NAME), train=ds,
        progress=False)


API_CALLS: dict[str, Callable[..., None]] = {"load_path": _api_load, "fit_path": _api_fit_path,
                                             "config": _api_config, "arrays": _api_arrays}


# ---------------------------------------------------------------------------------------------------------
# reference runs for predict / evaluate
# ---------------------------------------------------------------------------------------------------------
def reference_table(n: int = 12) -> bytes:
    """A small valid text table (CSV) with two classes."""
    rows = [f"{WORDS[i % 10]} {WORDS[(3 * i) % 10]} {i},{('spam', 'ham')[i % 2]}" for i in range(n)]
    return ("text,label\n" + "\n".join(rows) + "\n").encode()


def reference_images(n: int = 6, seed: int = 0) -> dict[str, bytes]:
    """Two class folders of small valid PNGs (relative paths ``imgs/<class>/<i>.png``)."""
    rng = np.random.default_rng(seed)
    return {f"imgs/{c}/{i}.png": png(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
            for c in ("cat", "dog") for i in range(n)}


def fit_reference_runs(root: Path) -> dict[str, str]:
    """Fit one text run and one image run (classical, seconds) under ``root``; returns the placeholders."""
    from transferkit.config import FitConfig
    from transferkit.data import load_path
    from transferkit.pipeline import fit

    root.mkdir(parents=True, exist_ok=True)
    (root / "ref.csv").write_bytes(reference_table())
    for rel, data in reference_images().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    out = {}
    for key, data, backbone in (("text_run", root / "ref.csv", "classical:tfidf"),
                                ("image_run", root / "imgs", "classical:pixels")):
        load_path(data)
        fit(FitConfig(train=str(data), backbone=backbone, strategy="classical", runs_dir=str(root / "runs"),
                      name=key), progress=False)
        out[key] = str(root / "runs" / key)
    return out


# ---------------------------------------------------------------------------------------------------------
# image bytes
# ---------------------------------------------------------------------------------------------------------
def _save(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def png(arr: np.ndarray) -> bytes:
    return _save(Image.fromarray(arr), "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def bomb_gif(width: int, height: int) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height``."""
    image = b"\x2c" + b"\x00" * 9 + b"\x02\x02D\x01\x00;"  # an image descriptor and a tiny LZW block
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + image


def bad_image(kind: str, rng: np.random.Generator) -> bytes:
    """The bytes of one broken or unusual image file of ``kind`` (see ``IMAGE_DAMAGE``)."""
    arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    if kind == "zero-byte":
        return b""
    if kind == "text-as-image":
        return b"this is not an image\n"
    if kind in ("truncated-png", "truncated-jpeg"):
        data = png(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) if kind == "truncated-png" else \
            _save(Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)), "JPEG")
        return data[: max(8, int(len(data) * rng.uniform(0.1, 0.9)))]
    if kind == "animated-gif":
        frames = [Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)) for _ in range(3)]
        return _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    if kind == "png-16bit":
        return _save(Image.fromarray(rng.integers(0, 65536, (12, 12), dtype=np.uint16)), "PNG")
    if kind == "cmyk-jpeg":
        return _save(Image.fromarray(arr).convert("CMYK"), "JPEG")
    if kind == "tiff-float-nan":
        a = rng.normal(size=(12, 12)).astype(np.float32)
        a[rng.integers(0, 12), :] = np.nan
        a[0, 0] = np.inf
        return _save(Image.fromarray(a), "TIFF")
    if kind == "tiff-1bit":
        return _save(Image.fromarray(arr).convert("1"), "TIFF")
    if kind == "tiff-multipage":
        pages = [Image.fromarray(arr), Image.fromarray(arr[::-1])]
        return _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    if kind == "rgba-png":
        return _save(Image.fromarray(np.dstack([arr, arr[..., :1]])), "PNG")
    if kind == "png-magic-garbage":
        return b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    if kind == "bomb-huge":
        return bomb_png(100_000, 100_000)
    if kind == "bomb-over-limit":
        return bomb_png(12_000, 10_000)  # 1.3x PIL's limit: PIL only warns, transferkit must refuse
    if kind == "bomb-thin":
        return bomb_png(1, 80_000_000)
    if kind == "bomb-gif":
        return bomb_gif(65535, 65535)
    raise ValueError(kind)


IMAGE_DAMAGE = ("zero-byte", "text-as-image", "truncated-png", "truncated-jpeg", "animated-gif", "png-16bit",
                "cmyk-jpeg", "tiff-float-nan", "tiff-1bit", "tiff-multipage", "rgba-png", "png-magic-garbage",
                "bomb-huge", "bomb-over-limit", "bomb-thin", "bomb-gif")
IMAGE_SUFFIX = {"truncated-jpeg": ".jpg", "cmyk-jpeg": ".jpg", "text-as-image": ".jpg", "animated-gif": ".gif",
                "bomb-gif": ".gif", "tiff-float-nan": ".tif", "tiff-1bit": ".tiff", "tiff-multipage": ".tif"}
FOLDER_DAMAGE = ("symlink-loop", "self-link", "dangling-link", "link-to-dev-zero", "link-to-root", "fifo",
                 "non-utf8-name", "hidden-files", "empty-class", "one-class", "loose-images", "no-images",
                 "class-is-a-file")


# ---------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------
TABLE_FORMATS = ("csv", "tsv", "jsonl", "jsonl.gz", "csv.gz", "json", "parquet")
TABLE_DAMAGE = ("none", "unclosed-quote", "stray-quote", "nul-byte", "latin-1", "utf-16", "utf-16-no-bom", "utf-32",
                "bom", "truncate", "empty-label", "missing-label", "null-label", "float-labels", "int-labels",
                "ragged-long", "ragged-short", "empty-file", "header-only", "flip-bytes", "no-label-column",
                "non-object-line", "nested-label", "duplicate-column", "one-class", "tiny-class", "not-gzip",
                "long-field", "crlf", "bare-cr", "blank-lines", "empty-texts", "bool-labels", "mixed-labels",
                "fifo", "self-link", "directory")
PATH_DAMAGE = ("fifo", "self-link", "directory")  # the table path itself is not a regular file


@st.composite
def table_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """8-16 rows of real-looking text (words, punctuation, separators, unicode) in 2-3 classes."""
    n = draw(st.integers(8, 16))
    k = draw(st.integers(2, 3))
    names = draw(st.lists(st.sampled_from([c for c in CLASSES if c]), min_size=k, max_size=k, unique=True))
    noise = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
    rows = []
    for i in range(n):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5))
        rows.append({"text": " ".join(words) + " " + draw(noise), "label": names[i % k], "id": f"r{i}"})
    return rows


def _label_values(rows: list[dict[str, Any]], damage: str, rng: np.random.Generator) -> None:
    i = int(rng.integers(len(rows)))
    if damage == "empty-label":
        rows[i]["label"] = ""
    elif damage == "missing-label":
        rows[i].pop("label")
    elif damage == "null-label":
        rows[i]["label"] = None
    elif damage == "float-labels":
        for r in rows:
            r["label"] = float(rng.normal())
    elif damage == "int-labels":
        for j, r in enumerate(rows):
            r["label"] = j % 2
    elif damage == "bool-labels":
        for j, r in enumerate(rows):
            r["label"] = bool(j % 2)
    elif damage == "mixed-labels":
        for j, r in enumerate(rows):
            r["label"] = (1, "1", 2.0, "x")[j % 4]
    elif damage == "nested-label":
        rows[i]["label"] = [rows[i]["label"]] if rng.random() < 0.5 else {"name": rows[i]["label"]}
    elif damage == "one-class":
        for r in rows:
            r["label"] = rows[0]["label"]
    elif damage == "tiny-class":
        rows[i]["label"] = "rare"
    elif damage == "no-label-column":
        for r in rows:
            r.pop("label", None)
    elif damage == "long-field":
        rows[i]["text"] = "word " * 200_000
    elif damage == "empty-texts":
        for r in rows:
            r["text"] = ""


def _parquet_cell(v: Any) -> Any:
    """A cell of a mixed-type column as text (missing stays missing: None)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _encode_table(rows: list[dict[str, Any]], fmt: str) -> bytes:
    import pandas as pd

    base = fmt.removesuffix(".gz")
    if base == "parquet":
        df = pd.DataFrame(rows)
        for col in df.columns:  # pyarrow wants one type per column: mixed label columns become text
            if df[col].map(type).nunique() > 1:
                df[col] = df[col].map(_parquet_cell)
        b = io.BytesIO()
        df.to_parquet(b, index=False)
        return b.getvalue()
    if base == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif base == "json":
        text = json.dumps(rows, ensure_ascii=False, indent=1)
    else:
        df = pd.DataFrame(rows)
        text = df.to_csv(index=False, sep="\t" if base == "tsv" else ",")
    return text.encode("utf-8")


def _damage_bytes(data: bytes, damage: str, fmt: str, rng: np.random.Generator) -> bytes:
    """Byte-level damage of an encoded (uncompressed) table."""
    def at() -> int:
        return int(rng.integers(0, max(1, len(data))))

    if damage == "unclosed-quote":
        lines = data.split(b"\n")
        j = int(rng.integers(1, max(2, len(lines) - 1)))
        lines[j] = b'"' + lines[j]
        return b"\n".join(lines)
    if damage == "stray-quote":
        i = at()
        return data[:i] + b'"' + data[i:]
    if damage == "nul-byte":
        i = at()
        return data[:i] + b"\x00" + data[i:]
    if damage in ("latin-1", "utf-16", "utf-16-no-bom", "utf-32"):
        codec = {"latin-1": "latin-1", "utf-16": "utf-16", "utf-16-no-bom": "utf-16-le", "utf-32": "utf-32"}[damage]
        return data.decode("utf-8").encode(codec, errors="replace")
    if damage == "bom":
        return b"\xef\xbb\xbf" + data
    if damage == "truncate":
        return data[: at()]
    if damage in ("ragged-long", "ragged-short"):
        lines = data.split(b"\n")
        j = int(rng.integers(1, max(2, len(lines) - 1)))
        sep = b"\t" if fmt.startswith("tsv") else b","
        lines[j] = lines[j] + sep + b"extra" + sep + b"more" if damage == "ragged-long" else lines[j].split(sep)[0]
        return b"\n".join(lines)
    if damage == "empty-file":
        return b""
    if damage == "header-only":
        return data.split(b"\n")[0] + b"\n" if not fmt.startswith(("json", "parquet")) else b"[]" if \
            fmt == "json" else b""
    if damage == "flip-bytes":
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 8))):
            if b:
                b[at() % len(b)] = int(rng.integers(0, 256))
        return bytes(b)
    if damage == "non-object-line":
        lines = data.split(b"\n")
        j = int(rng.integers(0, max(1, len(lines) - 1)))
        lines[j] = [b"[1, 2]", b"42", b'"text"', b"null"][int(rng.integers(4))]
        return b"\n".join(lines)
    if damage == "duplicate-column":
        first, _, rest = data.partition(b"\n")
        sep = b"\t" if fmt.startswith("tsv") else b","
        cols = first.split(sep)
        return sep.join(cols[:1] + cols) + b"\n" + b"\n".join(
            sep.join(line.split(sep)[:1] + line.split(sep)) for line in rest.split(b"\n"))
    if damage == "crlf":
        return data.replace(b"\n", b"\r\n")
    if damage == "bare-cr":
        return data.replace(b"\n", b"\r")
    if damage == "blank-lines":
        return data.replace(b"\n", b"\n\n\n")
    return data


ROW_DAMAGE = ("empty-label", "missing-label", "null-label", "float-labels", "int-labels", "bool-labels",
              "mixed-labels", "nested-label", "one-class", "tiny-class", "no-label-column", "long-field",
              "empty-texts")


def table_bytes(rows: list[dict[str, Any]], fmt: str, damage: str, rng: np.random.Generator) -> bytes:
    """The rows encoded as ``fmt`` with ``damage`` applied (to the rows, the text, or the bytes)."""
    rows = [dict(r) for r in rows]
    if damage in ROW_DAMAGE:
        _label_values(rows, damage, rng)
    data = _encode_table(rows, fmt)
    if fmt == "parquet" and damage not in ROW_DAMAGE and damage != "none":
        data = _damage_bytes(data, "truncate" if damage in ("truncate", "header-only") else "flip-bytes", fmt, rng) \
            if damage not in ("empty-file",) else b""
    elif damage not in ROW_DAMAGE:
        data = _damage_bytes(data, damage, fmt, rng)
    if fmt.endswith(".gz"):
        data = data if damage == "not-gzip" else gzip.compress(data, mtime=0)
        if damage == "truncate":
            data = data[: int(rng.integers(0, max(1, len(data))))]
    return data


@st.composite
def table_cases(draw: st.DrawFn) -> Case:
    """``fit --train TABLE`` (and ``load_path`` / ``fit`` for the API) on a damaged table."""
    rows = draw(table_rows())
    fmt = draw(st.sampled_from(TABLE_FORMATS))
    damage = draw(st.sampled_from(TABLE_DAMAGE))
    seed = draw(st.integers(0, 2**16))
    task = draw(st.sampled_from(["classification"] * 4 + ["regression"]))
    strict = draw(st.booleans())
    rel = f"data.{fmt}"
    files = {rel: table_bytes(rows, fmt, damage, np.random.default_rng(seed))} if damage not in PATH_DAMAGE else \
        {f"{rel}/a/readme.txt": b"a folder named like a table"} if damage == "directory" else {}
    links = {rel: rel} if damage == "self-link" else {}
    fifos = (rel,) if damage == "fifo" else ()
    argv = ["--quiet", "fit", "--train", f"{{root}}/{rel}", *TEXT_FIT, "--runs-dir", "{root}/runs", "--name",
            RUN_NAME, "--task", task] + (["--strict"] if strict else [])
    flags = (task,) + (("strict",) if strict else ())
    api = ("fit_path", (f"{{root}}/{rel}", "classical:tfidf", "{root}/runs", *flags)) if draw(st.booleans()) \
        else ("load_path", (f"{{root}}/{rel}", *flags))
    return Case("table", f"{fmt}: {damage} ({task})", files, links, fifos, argv=argv, api=api,
                writes=(f"runs/{RUN_NAME}",))


# ---------------------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------------------
def _folder_damage(files: dict[str, bytes], links: dict[str, str], fifos: list[str], damage: str,
                   rng: np.random.Generator) -> None:
    good = png(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    if damage == "symlink-loop":
        links["imgs/cat/loop"] = ".."
    elif damage == "self-link":
        links["imgs/cat/self.png"] = "self.png"
    elif damage == "dangling-link":
        links["imgs/dog/dangling.jpg"] = "nowhere.jpg"
    elif damage == "link-to-dev-zero":
        links["imgs/dog/zero.png"] = "/dev/zero"
    elif damage == "link-to-root":
        links["imgs/cat/root"] = "{root}"
    elif damage == "fifo":
        fifos.append("imgs/cat/pipe.png")
    elif damage == "non-utf8-name":
        files[os.fsdecode(b"imgs/dog/caf\xe9-\xff.png")] = good
    elif damage == "hidden-files":
        files["imgs/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
        files["imgs/cat/._0.png"] = b"\x00\x05\x16\x07AppleDouble"
    elif damage == "empty-class":
        files["imgs/empty/readme.txt"] = b"no images here"
    elif damage == "one-class":
        for k in [k for k in files if k.startswith("imgs/dog/")]:
            files.pop(k)
    elif damage == "loose-images":
        for k in list(files):
            files["imgs/" + k.rsplit("/", 1)[-1].replace(".", f"_{len(files)}.")] = files.pop(k)
    elif damage == "no-images":
        for k in list(files):
            files[k + ".txt"] = files.pop(k)
    elif damage == "class-is-a-file":
        files["imgs/notaclass.png"] = good


def image_index(files: dict[str, bytes], links: dict[str, str], fifos: list[str]) -> bytes:
    """A CSV ``file,label`` of every image under imgs/ (paths relative to the table), plus rows whose path is
    missing, absolute, a device, a folder, empty, or climbs out of the folder."""
    import csv

    paths = sorted(p for p in [*files, *links, *fifos] if p.startswith("imgs/") and p.count("/") >= 2)
    rows = [(p, p.split("/")[1]) for p in paths]
    rows += [("imgs/cat/missing.png", "cat"), ("/dev/zero", "dog"), ("imgs", "cat"), ("", "dog"),
             ("../../../../etc/hostname", "cat"), ("imgs/" + "x" * 300 + ".png", "dog")]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "label"])
    writer.writerows((os.fsencode(p).decode("utf-8", "backslashreplace"), c) for p, c in rows)
    return out.getvalue().encode("utf-8")


@st.composite
def image_cases(draw: st.DrawFn) -> Case:
    """``fit --train FOLDER`` (and ``load_path`` / ``fit``) on a class folder with broken files in it."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    per_class = draw(st.integers(3, 5))
    files = {f"imgs/{c}/{i}.png": png(rng.integers(0, 256, (int(rng.integers(6, 20)), int(rng.integers(6, 20)), 3),
                                                  dtype=np.uint8))
             for c in ("cat", "dog") for i in range(per_class)}
    bad = draw(st.lists(st.sampled_from(IMAGE_DAMAGE), min_size=0, max_size=3))
    for j, kind in enumerate(bad):
        cls = ("cat", "dog")[j % 2]
        files[f"imgs/{cls}/bad{j}-{kind}{IMAGE_SUFFIX.get(kind, '.png')}"] = bad_image(kind, rng)
    links: dict[str, str] = {}
    fifos: list[str] = []
    folder = draw(st.lists(st.sampled_from(FOLDER_DAMAGE), max_size=2, unique=True))
    for damage in folder:
        _folder_damage(files, links, fifos, damage, rng)
    strict = draw(st.booleans())
    train, what = "{root}/imgs", "folder: "
    if draw(st.integers(0, 3)) == 0:  # the same files listed in a table, with paths that go nowhere
        files["index.csv"] = image_index(files, links, fifos)
        train, what = "{root}/index.csv", "image table: "
    argv = ["--quiet", "fit", "--train", train, *IMAGE_FIT, "--runs-dir", "{root}/runs", "--name",
            RUN_NAME] + (["--strict"] if strict else [])
    flags = ("strict",) if strict else ()
    api = ("fit_path", (train, "classical:pixels", "{root}/runs", *flags)) if draw(st.booleans()) \
        else ("load_path", (train, *flags))
    what += ", ".join(bad + folder or ["valid"]) + (" (strict)" if strict else "")
    return Case("images", what, files, links, tuple(fifos), argv, api, writes=(f"runs/{RUN_NAME}",))


# ---------------------------------------------------------------------------------------------------------
# YAML configs
# ---------------------------------------------------------------------------------------------------------
FUZZ_KEYS = ("seed", "epochs", "batch_size", "lr", "weight_decay", "val_fraction", "test_fraction", "probe_grid",
             "image_size", "max_length", "label_column", "text_column", "id_column", "class_weights", "strict",
             "loss", "head", "task", "patience", "warmup", "precision", "training", "engine", "num_threads",
             "overwrite", "val", "test", "candidates", "label_smoothing", "freeze", "min_steps", "checkpoint_every",
             "learning_rate", "epoch", "bogus key", "image-size", "training.epochs")
HUGE = (10**30, 2**63, -(2**63), 1e308, float("inf"), float("nan"), -1, 0, 2**31)


def _yaml_value() -> st.SearchStrategy:
    scalars = st.one_of(st.integers(-5, 200), st.sampled_from(HUGE), st.floats(allow_nan=True),
                        st.text(max_size=12), st.booleans(), st.none(), st.sampled_from(["1e-3", "0.5", "five",
                                                                                        "classical", "mse", "fp16"]))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=2)),
                        max_leaves=6)


def _safe_value(key: str, value: Any) -> Any:
    """Keep the fit on the fast path: no real thread counts or extraction engines (in-process, one core)."""
    if key == "num_threads" and isinstance(value, int) and not isinstance(value, bool) and 1 < value <= 1024:
        return 1
    if key == "engine" and value in ("compiled", "onnx", "onnx-int8"):
        return "eager"
    return value


BROKEN_YAML = (b"epochs: [1, 2\n", b"epochs 5\n", b"\tepochs: 5\n", b"a: b: c\n", b"- 1\n- 2\n", b"42\n",
               b"just a string\n", b"---\nepochs: 1\n---\nepochs: 2\n", b"epochs: !!python/object:os.system ls\n",
               b"key: &a [*a]\n", b"\xff\xfe e\x00p\x00", b"seed: 1\x00\n", b"", b"# only a comment\n",
               b"\xef\xbb\xbfseed: 3\n", b"1: 2\n", b"true: x\n", b"? [a, b]\n: c\n", b"null: 1\n",
               b"training: 5\n", b"training: [1, 2]\n", b"training: {bogus: 1}\n", b"training: {1: 2}\n",
               b"seed: " + b"9" * 5000 + b"\n", b"probe_grid: " + b"[" * 2000 + b"]" * 2000 + b"\n",
               (b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                b"probe_grid: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"),
               b"name: ../../escaped\n", b"name: a/b\n", b"runs_dir: 5\n", b"text_column: [a, b]\n",
               b"lr: 1e-3\n", b"epochs: 1.0e+400\n", b"seed: -1\n", b"probe_grid: []\n", b"probe_grid: [-1, 0]\n",
               b"val_fraction: .nan\n", b"strict: 'no'\n", b"image_size: 100000000\n")


@st.composite
def config_cases(draw: st.DrawFn) -> Case:
    """``fit --config FILE`` on a valid tiny table, with a generated or hand-broken YAML file."""
    if draw(st.booleans()):
        text = draw(st.sampled_from(BROKEN_YAML))
        what = f"yaml: {text[:40]!r}"
    else:
        import yaml

        keys = draw(st.lists(st.sampled_from(FUZZ_KEYS), min_size=1, max_size=4, unique=True))
        mapping = {k: _safe_value(k, draw(_yaml_value())) for k in keys}
        text = yaml.safe_dump(mapping, allow_unicode=draw(st.booleans())).encode("utf-8")
        what = f"keys: {', '.join(keys)}"
    files = {"t.csv": reference_table(), "c.yaml": text}
    target = draw(st.sampled_from(["{root}/c.yaml"] * 8 + ["{root}", "{root}/missing.yaml", "{root}/t.csv"]))
    argv = ["--quiet", "fit", "--config", target, "--train", "{root}/t.csv", *TEXT_FIT, "--runs-dir", "{root}/runs",
            "--name", RUN_NAME, "--num-threads", "1"]
    return Case("config", what, files, argv=argv, api=("config", (target, "{root}/t.csv", "{root}/runs")),
                writes=(f"runs/{RUN_NAME}",))


# ---------------------------------------------------------------------------------------------------------
# predict / evaluate with a fitted run
# ---------------------------------------------------------------------------------------------------------
TEXT_INPUTS = (b"", b"\n\n", b"one text\nanother text\n", b"\xff\xfe\x00\x01binary", "caf\xe9\n".encode("latin-1"),
               "héllo wörld\n".encode("utf-16"), b"a" * 100_000 + b"\n", b"\x00\x00\x00")


# Damage that still fails outside the data loaders: left out of the tests' draws, kept in the benchmark's
# (``known_failures=True``), so that its table shows them until they are fixed. None at present.
KNOWN_FAILURES: dict[str, str] = {}


@st.composite
def predict_cases(draw: st.DrawFn, known_failures: bool = False) -> Case:
    """``predict`` / ``evaluate`` of the reference runs on damaged tables, text files and image folders."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    command = draw(st.sampled_from(["predict", "evaluate"]))
    kind = draw(st.sampled_from(["table", "text-file", "images", "image-file"]))
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    fifos: list[str] = []
    if kind == "table":
        fmt = draw(st.sampled_from(TABLE_FORMATS))
        damage = draw(st.sampled_from(TABLE_DAMAGE))
        target, run = f"{{root}}/data.{fmt}", "{text_run}"
        files[f"data.{fmt}"] = table_bytes(draw(table_rows()), fmt, damage, rng)
        what = f"{command} {fmt}: {damage}"
    elif kind == "text-file":
        target, run = "{root}/in.txt", "{text_run}"
        files["in.txt"] = draw(st.sampled_from(TEXT_INPUTS))
        what = f"{command} text file {files['in.txt'][:20]!r}"
    else:
        damage = draw(st.sampled_from(IMAGE_DAMAGE))
        files.update(reference_images(3, seed))
        name = f"imgs/cat/bad-{damage}{IMAGE_SUFFIX.get(damage, '.png')}"
        files[name] = bad_image(damage, rng)
        extra = draw(st.sampled_from((None,) + FOLDER_DAMAGE[:6]
                                     + ("non-utf8-name",)))
        if extra:
            _folder_damage(files, links, fifos, extra, rng)
        target = "{root}/imgs" if kind == "images" else f"{{root}}/{name}"
        if kind == "image-file" and extra == "fifo":
            target = "{root}/imgs/cat/pipe.png"
        run = "{image_run}"
        what = f"{command} {kind}: {damage}" + (f", {extra}" if extra else "")
    if command == "predict":
        out = draw(st.sampled_from(["pred.csv", "pred.json", None]))
        argv = ["--quiet", "predict", run, target] + (["-o", f"{{root}}/{out}"] if out else [])
        return Case("predict", what, files, links, tuple(fifos), argv, outputs=(out,) if out else ())
    argv = ["--quiet", "evaluate", run, target, "--out", "{root}/eval"]
    return Case("predict", what, files, links, tuple(fifos), argv, writes=("eval",))


# ---------------------------------------------------------------------------------------------------------
# arrays (Python API only)
# ---------------------------------------------------------------------------------------------------------
ARRAY_DAMAGE = ("none", "nan-pixel", "inf-pixel", "negative", "huge-values", "bool", "int16", "object", "complex",
                "ndim-2", "ndim-5", "channels-2", "channels-7", "no-images", "zero-height", "channels-first",
                "rgba")
LABEL_DAMAGE = ("none", "none-label", "nan-label", "inf-label", "empty-label", "two-d", "length", "scalar",
                "list-labels", "dict-labels", "one-class", "float-labels", "bool-labels", "mixed", "unlabelled",
                "ragged")
TEXT_DAMAGE = ("none", "none-text", "int-text", "bytes-text", "empty-list", "all-empty", "surrogates", "nul",
               "huge-text", "tuple", "numpy-str")


def _image_array(damage: str, n: int, rng: np.random.Generator) -> np.ndarray:
    X = rng.random((n, 8, 8)).astype(np.float32)
    i = int(rng.integers(n))
    changes: dict[str, Callable[[], np.ndarray]] = {
        "negative": lambda: -X, "huge-values": lambda: X * 1e30, "bool": lambda: X > 0.5,
        "int16": lambda: (X * 3000 - 1000).astype(np.int16), "object": lambda: X.astype(object),
        "complex": lambda: X + 1j, "ndim-2": lambda: X.reshape(n, -1), "ndim-5": lambda: X[:, None, :, :, None],
        "channels-2": lambda: np.stack([X, X], -1), "channels-7": lambda: np.stack([X] * 7, -1),
        "no-images": lambda: X[:0], "zero-height": lambda: X[:, :0], "channels-first": lambda: np.stack([X] * 3, 1),
        "rgba": lambda: np.stack([X] * 4, -1)}
    if damage in ("nan-pixel", "inf-pixel"):
        X[i, int(rng.integers(8)), int(rng.integers(8))] = np.nan if damage == "nan-pixel" else -np.inf
        return X
    return changes.get(damage, lambda: X)()


def _labels(damage: str, n: int, rng: np.random.Generator) -> Any:
    y: list[Any] = [("a", "b")[j % 2] for j in range(n)]
    i = int(rng.integers(n))
    if damage in ("none-label", "nan-label", "inf-label", "empty-label"):
        y[i] = {"none-label": None, "nan-label": float("nan"), "inf-label": float("inf"), "empty-label": ""}[damage]
        return np.asarray(y, dtype=object) if rng.random() < 0.5 else y
    out: dict[str, Callable[[], Any]] = {
        "two-d": lambda: np.eye(2)[np.arange(n) % 2], "length": lambda: y[:-1], "scalar": lambda: "a",
        "list-labels": lambda: [[v] for v in y], "dict-labels": lambda: [{"c": v} for v in y],
        "one-class": lambda: ["a"] * n, "float-labels": lambda: rng.normal(size=n),
        "bool-labels": lambda: [bool(j % 2) for j in range(n)],
        "mixed": lambda: [(1, "1", 2.5)[j % 3] for j in range(n)],
        "unlabelled": lambda: None, "ragged": lambda: [[1]] * (n - 1) + [[1, 2]]}
    return out.get(damage, lambda: y)()


def _texts(damage: str, n: int, rng: np.random.Generator) -> Any:
    X: list[Any] = [f"{WORDS[j % 10]} {WORDS[(j * 7) % 10]} {j}" for j in range(n)]
    i = int(rng.integers(n))
    if damage in ("none-text", "int-text", "bytes-text"):
        X[i] = {"none-text": None, "int-text": 7, "bytes-text": b"bytes"}[damage]
    elif damage == "surrogates":
        X[i] = X[i] + "\ud800\udfff"
    elif damage == "nul":
        X[i] = "\x00" + X[i]
    elif damage == "huge-text":
        X[i] = "word " * 100_000
    elif damage == "one-letter-words":
        X = [f"{chr(97 + j % 26)} {j % 10}" for j in range(n)]
    out: dict[str, Callable[[], Any]] = {"empty-list": list, "all-empty": lambda: [""] * n,
                                         "tuple": lambda: tuple(X), "numpy-str": lambda: np.asarray(X)}
    return out.get(damage, lambda: X)()


@st.composite
def array_cases(draw: st.DrawFn, known_failures: bool = False) -> Case:
    """``from_arrays(X, y)`` then ``fit(..., train=ds)``: damaged image arrays, texts and labels."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(12, 20))
    labels = draw(st.sampled_from(LABEL_DAMAGE))
    if draw(st.booleans()):
        damage = draw(st.sampled_from(ARRAY_DAMAGE))
        X = _image_array(damage, n, rng)
        what = f"image array: {damage}, labels: {labels}"
    else:
        damage = draw(st.sampled_from(TEXT_DAMAGE + ("one-letter-words",)))
        X = _texts(damage, n, rng)
        what = f"texts: {damage}, labels: {labels}"
    value_max = draw(st.sampled_from([None] * 6 + [0, -1.0, float("nan"), 255, "x"]))
    return Case("arrays", what + (f", value_max={value_max!r}" if value_max is not None else ""),
                api=("arrays", (X, _labels(labels, n, rng), value_max, "{root}/runs")),
                writes=(f"runs/{RUN_NAME}",))


STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "table": table_cases, "images": image_cases, "config": config_cases, "predict": predict_cases,
    "arrays": array_cases}


def describe(outcome: Outcome) -> str:
    """One line for a report: kind, exit code, the error line or the last line of the traceback."""
    tail = (outcome.detail.strip().splitlines() or [""])[-1] if not outcome.clean else outcome.error
    return f"{outcome.kind} (exit {outcome.code}): {tail[:300]}"


if __name__ == "__main__":  # pragma: no cover - a quick look at a few generated cases
    for fam, make in STRATEGIES.items():
        print(fam, make().example(), file=sys.stderr)
