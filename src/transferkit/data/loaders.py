"""Loaders: image folders (one sub-folder per class), tables (CSV / JSONL / Parquet), numpy arrays.

Every problem with the data is a one-line :class:`~transferkit.errors.DataError` naming the file, the row or line,
the column or value, and what to do: undecodable tables, NUL bytes, truncated files, missing or non-scalar labels,
non-finite pixels or targets.
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import math
import os
import re
import reprlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, suggest
from .dataset import Dataset
from .images import IMAGE_EXTENSIONS, image_problem

_SURROGATES = re.compile("[\udc80-\udcff]+")
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")  # e.g. a JSON "\ud800" escape: not encodable as UTF-8
_BAD = "\U0010fffd"  # a private-use code point standing for undecodable bytes until they are counted
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".jsonl.gz", ".csv.gz", ".tsv.gz")
# byte-order marks, longest first (the UTF-32-LE mark starts with the UTF-16-LE one)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
GZIP_MIN_LIMIT = 1 << 30  # a .gz table may always expand to 1 GiB ...
GZIP_MAX_RATIO = 100      # ... and beyond that to 100x its compressed size (more is a gzip bomb)
_CSV_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_CSV_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 2


@dataclass
class Columns:
    """Which table columns hold what; ``text`` may name several columns joined with a newline."""

    text: str | None = None
    image: str | None = None
    label: str = "label"
    id: str | None = None


# ---------------------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------------------
def printable_name(name: str) -> str:
    """A file name as printable text: bytes that are not UTF-8 (surrogate-escaped by the OS layer) as ``\\xff``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _scan_folder(root: Path, labelled: bool) -> tuple[list[str], list[tuple[str, Path]]]:
    """The class names and every (class, candidate image file) under ``root``, in a stable order."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if labelled and not classes:
        files = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        raise DataError(f"'{root}' has no class sub-folders (found {len(files)} loose images). "
                        "Put each class's images in its own sub-folder: ROOT/<class>/<image>.")
    found = []
    for cls in classes or [""]:
        for p in sorted((root / cls).rglob("*")):  # rglob does not follow symlinked folders: no loops
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                found.append((cls, p))
    return classes, found


def load_image_folder(root: Path, strict: bool = False, labelled: bool = True) -> Dataset:
    """``root/<class>/<image>``; unreadable images are skipped and counted (an error with strict)."""
    try:
        _, found = _scan_folder(root, labelled)
    except OSError as e:
        raise DataError(f"Cannot list the folder '{root}': {e.strerror or e}. Check that it is readable.") from None
    paths, labels, skipped = [], [], 0
    for cls, p in found:
        problem = image_problem(str(p))
        if problem is not None:
            if strict:
                raise DataError(f"Unreadable image '{printable_name(str(p))}' ({problem}). Remove it, or drop "
                                "--strict to skip such files.")
            skipped += 1
            continue
        paths.append(str(p))
        labels.append(printable_name(cls))
    if not paths:
        raise DataError(f"No readable images under '{root}' (extensions: {', '.join(IMAGE_EXTENSIONS)}"
                        f"{f'; {skipped} unreadable' if skipped else ''}).")
    if labelled:
        present = sorted(set(labels))
        if len(present) < 2:
            raise DataError(f"'{root}' has images for {len(present)} class ({', '.join(present)}); "
                            "a classifier needs at least 2 class sub-folders with images.")
    y = np.asarray(labels, dtype=object) if labelled else None
    ids = [printable_name(os.path.relpath(p, root)) for p in paths]
    return Dataset("image", paths, y, ids, origin=str(root), counts={"skipped_images": skipped})


# ---------------------------------------------------------------------------------------------------------
# reading tables
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Table:
    """A parsed table; ``lines`` maps each row to its line in the file (JSONL), for messages."""

    df: Any
    lines: list[int] | None = None

    def row(self, i: int) -> str:
        return f"row {i + 1}" + (f" (line {self.lines[i]})" if self.lines else "")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped for ``.gz`` (truncated / damaged archives and gzip bombs refused)."""
    if not path.name.lower().endswith(".gz"):
        return path.read_bytes()
    limit = max(GZIP_MIN_LIMIT, GZIP_MAX_RATIO * path.stat().st_size)
    out = io.BytesIO()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
                if out.tell() > limit:
                    raise DataError(f"'{path}' expands to more than {limit} bytes (a gzip bomb?). Give the "
                                    "table uncompressed, or split it.")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"Cannot decompress '{path}': {str(e) or type(e).__name__} (a truncated or damaged "
                        "gzip file?). Re-create it with gzip, or give the table uncompressed.") from None
    return out.getvalue()


def _decode(raw: bytes, path: Path) -> str:
    """Text of a table file: a byte-order mark picks UTF-8/16/32; otherwise UTF-8 with each run of invalid bytes
    as one ``_BAD`` marker (counted later). NUL bytes (binary files, UTF-16 without a mark) are refused."""
    text = None
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            if encoding == "utf-8-sig":
                raw = raw[len(bom):]
            else:
                text = raw.decode(encoding, errors="replace")
            break
    if text is None:
        text = raw.decode("utf-8", errors="surrogateescape")
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(f"'{path}' has a NUL byte on line {text.count(chr(10), 0, nul) + 1}: it is a binary file, "
                        "or UTF-16/UTF-32 text without a byte-order mark. Save the table as UTF-8 text.")
    return _SURROGATES.sub(_BAD, text)


def _json_kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def _jsonl_table(text: str, path: Path):
    """One JSON object per line (blank lines skipped); a bad line is named by its 1-based line number."""
    import pandas as pd

    records, lines = [], []
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"Line {n} of '{path}' is not valid JSON (column {e.colno}: {e.msg}). Fix or remove "
                            "that line: each line must hold one JSON object.") from None
        except RecursionError:
            raise DataError(f"Line {n} of '{path}' nests JSON too deeply. Fix or remove that line.") from None
        if not isinstance(rec, dict):
            raise DataError(f"Line {n} of '{path}' holds a JSON {_json_kind(rec)}, not an object: each line must be "
                            'one record such as {"text": "...", "label": "..."}.')
        records.append(rec)
        lines.append(n)
    return _Table(pd.DataFrame.from_records(records) if records else pd.DataFrame(), lines)


def _json_table(text: str, path: Path):
    """A JSON document: a list of records, or a mapping of columns."""
    import pandas as pd

    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). Fix the file "
                        "(a list of records [{...}, ...]), or use JSONL: one object per line.") from None
    except RecursionError:
        raise DataError(f"'{path}' nests JSON too deeply. Give a list of records [{{...}}, ...].") from None
    if isinstance(data, list):
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataError(f"Record {i + 1} of '{path}' is a JSON {_json_kind(rec)}, not an object: the file "
                                "must be a list of records [{...}, ...].")
        return _Table(pd.DataFrame.from_records(data) if data else pd.DataFrame())
    if isinstance(data, dict):
        try:
            return _Table(pd.DataFrame(data))
        except (ValueError, TypeError) as e:
            raise DataError(f"'{path}' is a JSON object but not a table of columns ({str(e).splitlines()[0]}). "
                            "Give a list of records [{...}, ...].") from None
    raise DataError(f"'{path}' holds a JSON {_json_kind(data)}; a table is a list of records [{{...}}, ...].")


def _csv_error(e: Exception, path: Path) -> DataError:
    """pandas' tokenizer errors, reworded with 1-based line numbers and a fix."""
    import pandas as pd

    msg = str(e)
    if m := _CSV_FIELDS.search(msg):
        return DataError(f"Line {m[2]} of '{path}' has {m[3]} fields but the header has {m[1]}: a stray separator, "
                         "or a text with the separator that is not quoted? Quote that field or fix the row.")
    if m := _CSV_OPEN_QUOTE.search(msg):
        return DataError(f"A quoted field that starts on line {int(m[1]) + 1} of '{path}' is never closed. Add the "
                         'closing quote ("), or double a quote inside a quoted field ("").')
    if isinstance(e, pd.errors.EmptyDataError):
        return DataError(f"Table '{path}' is empty: no header row and no rows. Give a header line and data rows.")
    return DataError(f"Cannot read table '{path}': {msg.splitlines()[0] if msg else type(e).__name__}. "
                     "Check that it is a valid CSV/TSV file.")


def _csv_table(text: str, path: Path, sep: str):
    """CSV / TSV. Lines end in LF (CRLF is read as LF); a lone CR in a file of LF lines is text inside a field
    (pandas' own writer leaves it unquoted), not a line break. A file of CR-only lines still reads."""
    import pandas as pd

    text = text.replace("\r\n", "\n")
    lines = {"lineterminator": "\n"} if "\n" in text and "\r" in text else {}
    try:
        return _Table(pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False, **lines))
    except Exception as e:  # noqa: BLE001 - the tokenizer's ParserError / EmptyDataError, and whatever else
        raise _csv_error(e, path) from None


def _parquet_table(path: Path):
    import pandas as pd

    try:
        return _Table(pd.read_parquet(path))
    except Exception as e:  # noqa: BLE001 - pyarrow: ArrowInvalid, ArrowNotImplementedError, OSError, ...
        msg = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip(". ")
        raise DataError(f"Cannot read Parquet file '{path}': {msg}. It may be truncated or damaged: write it "
                        "again.") from None


def _read_table(path: Path) -> _Table:
    name = path.name.lower()
    if name.endswith(".parquet"):
        table = _parquet_table(path)
    else:
        try:
            text = _decode(_read_bytes(path), path)
        except OSError as e:
            raise DataError(f"Cannot read table '{path}': {e.strerror or e}.") from None
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            table = _jsonl_table(text, path)
        elif name.endswith(".json"):
            table = _json_table(text, path)
        else:
            table = _csv_table(text, path, "\t" if name.endswith((".tsv", ".tsv.gz")) else ",")
    table.df.columns = [_clean(c) for c in table.df.columns]
    dup = table.df.columns[table.df.columns.duplicated()]
    if len(dup):
        raise DataError(f"Table '{path}' has the column '{dup[0]}' more than once. Rename one of them.")
    return table


def _need(df, col: str, path: Path, what: str) -> None:
    if col not in df.columns:
        cols = [str(c) for c in df.columns]
        raise DataError(f"Column '{col}' ({what}) not found in '{path}'.{suggest(col, cols)} "
                        f"Columns: {', '.join(cols)}. Set it with --{what}-column.")


# ---------------------------------------------------------------------------------------------------------
# labels and values
# ---------------------------------------------------------------------------------------------------------
def _is_missing(v: Any) -> bool:
    """None, NaN, NA / NaT, or a blank string."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(v)
    try:
        import pandas as pd

        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def _is_scalar_label(v: Any) -> bool:
    """A string, bool or real number: what a label map can sort, compare and save as JSON."""
    return isinstance(v, (str, bool, int, float, np.integer, np.floating, np.bool_))


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _labels(table: _Table, col: str, path: Path, task: str) -> np.ndarray:
    """The label column, checked row by row: no empty or non-scalar labels; finite numbers for regression."""
    values = [_clean(v) for v in table.df[col].tolist()]
    where = f"Label column '{col}' in '{path}'"
    for i, v in enumerate(values):
        if _is_missing(v):
            raise DataError(f"{where} is empty at {table.row(i)}. Fill it in or drop the row.")
        if not _is_scalar_label(v):
            raise DataError(f"{where} holds a {type(v).__name__} at {table.row(i)} ({_short.repr(v)}); a label must "
                            "be a plain string or number.")
    if task != "regression":
        return np.asarray(values, dtype=object)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        x = _as_number(v)
        if x is None:
            raise DataError(f"{where} has a non-numeric value {_short.repr(v)} at {table.row(i)}; regression needs "
                            "numbers.")
        if not math.isfinite(x):
            raise DataError(f"{where} is {x} at {table.row(i)}; regression needs finite numbers. Fix or drop the row.")
        out[i] = x
    return out


def _clean(v: Any) -> Any:
    """A cell of a label / id / path column: undecodable bytes and lone surrogates as U+FFFD."""
    return _LONE_SURROGATES.sub("\ufffd", v.replace(_BAD, "\ufffd")) if isinstance(v, str) else v


def _clean_texts(texts: list[str]) -> tuple[list[str], int]:
    """Undecodable bytes and lone surrogates shown as U+FFFD; returns the texts and how many held any."""
    replaced = 0
    out = []
    for t in texts:
        fixed = _LONE_SURROGATES.sub("\ufffd", t.replace(_BAD, "\ufffd"))
        replaced += fixed != t
        out.append(fixed)
    return out, replaced


def _text_dataset(table: _Table, cols: list[str], path: Path, y, ids) -> Dataset:
    for c in cols:
        _need(table.df, c, path, "text")
    texts = table.df[cols].fillna("").astype(str).agg("\n".join, axis=1).tolist()
    texts, replaced = _clean_texts(texts)
    if not any(t.strip() for t in texts):
        raise DataError(f"The text column{'s' if len(cols) > 1 else ''} {', '.join(cols)} of '{path}' "
                        f"{'are' if len(cols) > 1 else 'is'} empty in every row. Name the column that holds the "
                        "texts with --text-column.")
    return Dataset("text", texts, y, ids, origin=str(path), counts={"replaced_utf8": replaced})


def _image_dataset(table: _Table, col: str, path: Path, y, ids, strict: bool) -> Dataset:
    _need(table.df, col, path, "image")
    base = path.parent
    paths, keep, skipped = [], [], 0
    for i, v in enumerate(table.df[col].tolist()):
        v = "" if _is_missing(v) else str(_clean(v))
        p = Path(v) if os.path.isabs(v) else base / v
        problem = "it is empty" if not v else image_problem(str(p))
        if problem is not None:
            if strict:
                why = "missing" if "does not exist" in problem or not v else f"unreadable ({problem})"
                raise DataError(f"Image '{printable_name(str(p))}' ({table.row(i)}, column '{col}') is {why}. "
                                "Fix the path, or drop --strict to skip such rows.")
            skipped += 1
            continue
        paths.append(str(p))
        keep.append(i)
    if not paths:
        raise DataError(f"None of the images in column '{col}' of '{path}' could be read "
                        "(paths are relative to the table's folder).")
    return Dataset("image", paths, None if y is None else y[keep], [ids[i] for i in keep], origin=str(path),
                   counts={"skipped_images": skipped})


def _guess_columns(df, columns: Columns, path: Path) -> tuple[list[str] | None, str | None]:
    text_cols = [c.strip() for c in columns.text.split(",") if c.strip()] if columns.text else None
    image_col = columns.image
    if text_cols is None and image_col is None:
        text_cols = next(([g] for g in ("text", "sentence", "body") if g in df.columns), None)
        if text_cols is None:
            image_col = next((g for g in ("image", "path", "file", "filepath") if g in df.columns), None)
    if not text_cols and image_col is None:
        raise DataError(f"No text or image column found in '{path}'. Columns: {', '.join(map(str, df.columns))}. "
                        "Name one with --text-column or --image-column.")
    return text_cols, image_col


def load_table(path: Path, columns: Columns, strict: bool = False, labelled: bool = True,
               task: str = "classification") -> Dataset:
    """A table with a text column (or several) or an image-path column, and a label column."""
    table = _read_table(path)
    df = table.df
    if len(df) == 0:
        raise DataError(f"Table '{path}' has no rows. Add data rows below the header.")
    text_cols, image_col = _guess_columns(df, columns, path)
    if labelled:
        _need(df, columns.label, path, "label")
    if columns.id:
        _need(df, columns.id, path, "id")
    ids = [str(_clean(v)) for v in df[columns.id]] if columns.id else [str(i) for i in range(len(df))]
    y = _labels(table, columns.label, path, task) if labelled else None
    if text_cols:
        return _text_dataset(table, text_cols, path, y, ids)
    return _image_dataset(table, image_col, path, y, ids, strict)


def load_path(path: str | os.PathLike, columns: Columns | None = None, strict: bool = False,
              labelled: bool = True, task: str = "classification") -> Dataset:
    """Dispatch on what ``path`` is: a folder of images or a table file."""
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"A data path must be a string or a path, got {type(path).__name__} {_short.repr(path)}.")
    p = Path(path)
    try:
        exists, is_dir, is_file = p.exists(), p.is_dir(), p.is_file()
    except (OSError, ValueError) as e:  # an embedded NUL, a name too long for the file system
        raise DataError(f"Data path {_short.repr(str(p))} is not usable: {e}.") from None
    if not exists:
        raise DataError(f"Data path '{p}' does not exist. Give an image folder or a CSV/JSONL/Parquet file.")
    if is_dir:
        if task == "regression":
            raise DataError(f"'{p}' is a folder; regression needs a table with a numeric label column.")
        return load_image_folder(p, strict=strict, labelled=labelled)
    if not p.name.lower().endswith(TABLE_EXTENSIONS + (".ndjson",)):
        raise DataError(f"'{p}' is not a folder or a table ({', '.join(TABLE_EXTENSIONS)}).")
    if not is_file:
        raise DataError(f"'{p}' is not a regular file (a FIFO or a device?). Give a table file or an image folder.")
    return load_table(p, columns or Columns(), strict=strict, labelled=labelled, task=task)


# ---------------------------------------------------------------------------------------------------------
# arrays (the Python API)
# ---------------------------------------------------------------------------------------------------------
def _check_image_array(X: np.ndarray) -> None:
    """Numbers, [N,H,W] or [N,H,W,C] / [N,C,H,W] with C in 1, 3, 4, non-empty, finite."""
    if X.dtype.kind not in "buif":
        raise DataError(f"X holds {X.dtype} values; an image array must hold numbers (uint8 0..255 or floats).")
    if X.ndim not in (3, 4):
        raise DataError(f"X has shape {X.shape}; images must be [N,H,W] or [N,H,W,C] / [N,C,H,W] "
                        "with C in 1, 3, 4.")
    if X.ndim == 4 and X.shape[-1] not in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
        raise DataError(f"X has shape {X.shape}: no channel axis of size 1, 3 or 4 (grey, RGB, RGBA), "
                        "first or last.")
    if X.shape[0] == 0:
        raise DataError("X holds no images (its first axis is 0).")
    if X.size == 0:
        raise DataError(f"X has shape {X.shape}: its images have no pixels.")
    if X.dtype.kind == "f":
        for s in range(0, len(X), 1024):  # in chunks: bounded extra memory
            bad = ~np.isfinite(X[s:s + 1024]).reshape(len(X[s:s + 1024]), -1).all(axis=1)
            if bad.any():
                i = s + int(np.flatnonzero(bad)[0])
                raise DataError(f"X[{i}] (image {i}) has NaN or infinite pixels. Fix or drop that image.")


def _check_value_max(value_max: Any) -> float:
    x = _as_number(value_max)
    if x is None or not math.isfinite(x) or x <= 0:
        raise DataError(f"value_max must be a positive finite number (the pixel value of white), got "
                        f"{_short.repr(value_max)}.")
    return x


def _label_array(y: Any, n: int) -> np.ndarray:
    """``y`` as a 1-D array of ``n`` plain labels; missing (None / NaN / blank) or non-scalar ones are refused."""
    try:
        arr = np.asarray(y)
    except ValueError:  # ragged nested sequences
        raise DataError("y must be a flat sequence of labels, one per sample; it holds sequences of "
                        "different lengths.") from None
    if arr.ndim == 0:
        raise DataError(f"y must be a sequence of labels (one per sample), got {type(y).__name__} {_short.repr(y)}.")
    if arr.ndim != 1:
        raise DataError(f"y has shape {arr.shape}; it must be 1-D, one label per sample (for one-hot rows pass "
                        "y.argmax(1)).")
    if len(arr) != n:
        raise DataError(f"X has {n} samples but y has {len(arr)}.")
    # a list is checked as given: np.asarray(["a", nan]) would turn the NaN into the text 'nan'
    raw = y if isinstance(y, (list, tuple)) else arr.tolist() if arr.dtype != object else arr
    for i, v in enumerate(raw):
        if _is_missing(v):
            raise DataError(f"y[{i}] is missing ({v!r}); every sample needs a label. Fill it in or drop sample {i}.")
        if not _is_scalar_label(v):
            raise DataError(f"y[{i}] is a {type(v).__name__} ({_short.repr(v)}); a label must be a plain string or "
                            "number.")
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            raise DataError(f"y[{i}] is {v}; labels and targets must be finite. Fix or drop sample {i}.")
    return arr


def _text_items(X: Sequence[Any]) -> list[str]:
    items = list(X)
    if not items:
        raise DataError("X is empty: give at least one text or image.")
    for i, v in enumerate(items):
        if not isinstance(v, str):
            raise DataError(f"X[{i}] is a {type(v).__name__} ({_short.repr(v)}), not a string: X must be a numpy "
                            "image array [N,H,W(,C)], or a list of texts or image paths.")
    return items


def from_arrays(X, y=None, value_max: float | None = None) -> Dataset:
    """Numpy images [N,H,W(,C)] or a sequence of texts (or image paths), with optional targets.

    Raises:
        DataError: non-numeric or non-finite pixels (naming the first bad image), a bad shape, a text that is not
            a string, or a missing (None / NaN / blank) or non-scalar label (naming its index).
    """
    if isinstance(X, np.ndarray) and X.ndim >= 2 and X.dtype == object:
        raise DataError(f"X is an array of Python objects with shape {X.shape}; images must be a numeric array "
                        "(e.g. X.astype(np.float32)), texts a list of strings.")
    if isinstance(X, np.ndarray) and X.ndim >= 2 and X.dtype.kind not in "US":
        if X.ndim == 2:
            raise DataError(f"X has shape {X.shape}: X must be a numpy image array [N,H,W(,C)], or a list of texts "
                            "or image paths (for one image use X[None]).")
        _check_image_array(X)
        if value_max is None:
            top = float(np.max(X)) if X.dtype != np.uint8 else 255.0
            value_max = 255.0 if X.dtype == np.uint8 else max(1.0, top)
        ds = Dataset("image", X, None, origin="arrays", value_max=_check_value_max(value_max))
    elif isinstance(X, (list, tuple, np.ndarray)):
        items = _text_items(X.tolist() if isinstance(X, np.ndarray) else X)
        looks_like_paths = all(v.lower().endswith(IMAGE_EXTENSIONS) and _exists(v) for v in items[:20])
        ds = Dataset("image" if looks_like_paths else "text", items, None, origin="arrays")
        if ds.modality == "text":
            ds.inputs, ds.counts["replaced_utf8"] = _clean_texts(items)
            if not any(t.strip() for t in ds.inputs):
                raise DataError(f"Every text in X is empty ({len(items)} texts); give the texts to learn from.")
    else:
        raise DataError("X must be a numpy image array [N,H,W(,C)], or a list of texts or image paths; "
                        f"got {type(X).__name__}" + (f" with shape {X.shape}" if hasattr(X, "shape") else "") + ".")
    if y is not None:
        ds.y = _label_array(y, len(ds))
    return ds


def _exists(path: str) -> bool:
    try:
        return os.path.exists(path)
    except (OSError, ValueError):
        return False


def texts_from_lines(lines: Sequence[str]) -> Dataset:
    return Dataset("text", [line.rstrip("\n") for line in lines], None, origin="lines")
