"""Loaders: image folders (one sub-folder per class), tables (CSV / JSONL / Parquet), numpy arrays."""
from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, suggest
from .dataset import Dataset
from .images import IMAGE_EXTENSIONS, is_readable_image

_SURROGATES = re.compile("[\udc80-\udcff]+")
_BAD = "\U0010fffd"  # a private-use code point standing for undecodable bytes until they are counted
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".jsonl.gz", ".csv.gz", ".tsv.gz")



@dataclass
class Columns:
    """Which table columns hold what; ``text`` may name several columns joined with a newline."""

    text: str | None = None
    image: str | None = None
    label: str = "label"
    id: str | None = None


def load_image_folder(root: Path, strict: bool = False, labelled: bool = True) -> Dataset:
    """``root/<class>/<image>``; unreadable images are skipped and counted (an error with strict)."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if labelled and not classes:
        files = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        raise DataError(f"'{root}' has no class sub-folders (found {len(files)} loose images). "
                        "Put each class's images in its own sub-folder: ROOT/<class>/<image>.")
    paths, labels, skipped = [], [], 0
    for cls in classes or [""]:
        for p in sorted((root / cls).rglob("*")):
            if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
                continue
            if not is_readable_image(str(p)):
                if strict:
                    raise DataError(f"Unreadable image '{p}'. Remove it, or drop --strict to skip such files.")
                skipped += 1
                continue
            paths.append(str(p))
            labels.append(cls)
    if not paths:
        raise DataError(f"No readable images under '{root}' (extensions: {', '.join(IMAGE_EXTENSIONS)}).")
    if labelled:
        present = sorted(set(labels))
        if len(present) < 2:
            raise DataError(f"'{root}' has images for {len(present)} class ({', '.join(present)}); "
                            "a classifier needs at least 2 class sub-folders with images.")
    y = np.asarray(labels, dtype=object) if labelled else None
    ids = [os.path.relpath(p, root) for p in paths]
    return Dataset("image", paths, y, ids, origin=str(root), counts={"skipped_images": skipped})


def _decoded_text(path: Path) -> io.StringIO:
    """The file as text; each run of invalid UTF-8 bytes becomes one ``_BAD`` marker (counted later)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    return io.StringIO(_SURROGATES.sub(_BAD, text))


def _read_table(path: Path):
    import pandas as pd

    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            return pd.read_json(_decoded_text(path), lines=True, dtype=False)
        if name.endswith(".json"):
            return pd.read_json(_decoded_text(path), dtype=False)
        sep = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        return pd.read_csv(_decoded_text(path), sep=sep, keep_default_na=False)
    except (ValueError, OSError) as e:
        raise DataError(f"Cannot read table '{path}': {str(e).splitlines()[0]}") from None


def _need(df, col: str, path: Path, what: str) -> None:
    if col not in df.columns:
        cols = [str(c) for c in df.columns]
        raise DataError(f"Column '{col}' ({what}) not found in '{path}'.{suggest(col, cols)} "
                        f"Columns: {', '.join(cols)}. Set it with --{what}-column.")


def load_table(path: Path, columns: Columns, strict: bool = False, labelled: bool = True,
               task: str = "classification") -> Dataset:
    """A table with a text column (or several) or an image-path column, and a label column."""
    df = _read_table(path)
    if len(df) == 0:
        raise DataError(f"Table '{path}' has no rows.")
    text_cols = columns.text.split(",") if columns.text else None
    image_col = columns.image
    if text_cols is None and image_col is None:
        for guess in ("text", "sentence", "body"):
            if guess in df.columns:
                text_cols = [guess]
                break
        else:
            for guess in ("image", "path", "file", "filepath"):
                if guess in df.columns:
                    image_col = guess
                    break
    if text_cols is None and image_col is None:
        raise DataError(f"No text or image column found in '{path}'. Columns: {', '.join(map(str, df.columns))}. "
                        "Name one with --text-column or --image-column.")
    if labelled:
        _need(df, columns.label, path, "label")
    if columns.id:
        _need(df, columns.id, path, "id")
    ids = [str(v) for v in df[columns.id]] if columns.id else [str(i) for i in range(len(df))]
    y = None
    if labelled:
        raw = df[columns.label]
        if task == "regression":
            try:
                y = raw.astype(float).to_numpy()
            except (ValueError, TypeError):
                bad = next(v for v in raw if not _is_number(v))
                raise DataError(f"Label column '{columns.label}' in '{path}' has a non-numeric value {bad!r}; "
                                "regression needs numbers.") from None
        else:
            if raw.isna().any() or (raw.astype(str) == "").any():
                row = int(np.flatnonzero(raw.isna().to_numpy() | (raw.astype(str) == "").to_numpy())[0])
                raise DataError(f"Label column '{columns.label}' in '{path}' is empty at row {row + 1}. "
                                "Fill it in or drop the row.")
            y = raw.to_numpy(dtype=object)
    if text_cols is not None:
        for c in text_cols:
            _need(df, c, path, "text")
        texts = df[text_cols].fillna("").astype(str).agg("\n".join, axis=1).tolist()
        # invalid UTF-8 bytes arrive as markers: count the texts holding any, then show them as U+FFFD
        replaced = sum(_BAD in t for t in texts)
        texts = [t.replace(_BAD, "\ufffd") for t in texts]
        return Dataset("text", texts, y, ids, origin=str(path), counts={"replaced_utf8": replaced})
    _need(df, image_col, path, "image")
    base = path.parent
    paths, keep, skipped = [], [], 0
    for i, v in enumerate(df[image_col].astype(str)):
        p = Path(v) if os.path.isabs(v) else base / v
        if not p.exists() or not is_readable_image(str(p)):
            if strict:
                why = "missing" if not p.exists() else "unreadable"
                raise DataError(f"Image '{p}' (row {i + 1}, column '{image_col}') is {why}. "
                                "Fix the path, or drop --strict to skip such rows.")
            skipped += 1
            continue
        paths.append(str(p))
        keep.append(i)
    if not paths:
        raise DataError(f"None of the images in column '{image_col}' of '{path}' could be read.")
    ds = Dataset("image", paths, None if y is None else y[keep], [ids[i] for i in keep], origin=str(path),
                 counts={"skipped_images": skipped})
    return ds


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def load_path(path: str | os.PathLike, columns: Columns | None = None, strict: bool = False,
              labelled: bool = True, task: str = "classification") -> Dataset:
    """Dispatch on what ``path`` is: a folder of images or a table file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"Data path '{p}' does not exist. Give an image folder or a CSV/JSONL/Parquet file.")
    if p.is_dir():
        if task == "regression":
            raise DataError(f"'{p}' is a folder; regression needs a table with a numeric label column.")
        return load_image_folder(p, strict=strict, labelled=labelled)
    if not p.name.lower().endswith(TABLE_EXTENSIONS + (".ndjson",)):
        raise DataError(f"'{p}' is not a folder or a table ({', '.join(TABLE_EXTENSIONS)}).")
    return load_table(p, columns or Columns(), strict=strict, labelled=labelled, task=task)


def from_arrays(X, y=None, value_max: float | None = None) -> Dataset:
    """Numpy images [N,H,W(,C)] or a sequence of texts (or image paths), with optional targets."""
    if isinstance(X, np.ndarray) and X.ndim >= 3:
        if value_max is None:
            value_max = 255.0 if X.dtype == np.uint8 else (1.0 if float(np.max(X)) <= 1.0 else float(np.max(X)))
        ds = Dataset("image", X, None if y is None else np.asarray(y), origin="arrays", value_max=float(value_max))
    elif isinstance(X, (list, tuple, np.ndarray)) and all(isinstance(v, str) for v in X):
        items = [str(v) for v in X]
        looks_like_paths = bool(items) and all(v.lower().endswith(IMAGE_EXTENSIONS) and os.path.exists(v)
                                               for v in items[:20])
        ds = Dataset("image" if looks_like_paths else "text", items, None if y is None else np.asarray(y),
                     origin="arrays")
    else:
        raise DataError("X must be a numpy image array [N,H,W(,C)], or a list of texts or image paths; "
                        f"got {type(X).__name__}" + (f" with shape {X.shape}" if hasattr(X, "shape") else "") + ".")
    if y is not None and len(ds.y) != len(ds):
        raise DataError(f"X has {len(ds)} samples but y has {len(ds.y)}.")
    return ds


def texts_from_lines(lines: Sequence[str]) -> Dataset:
    return Dataset("text", [line.rstrip("\n") for line in lines], None, origin="lines")
