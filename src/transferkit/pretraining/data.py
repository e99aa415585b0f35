"""Unlabelled text for pretraining: the loaders fit uses (tables), plus .txt files and folders of them."""
from __future__ import annotations

from pathlib import Path

from ..data import Columns, Dataset, load_path
from ..data.images import IMAGE_EXTENSIONS
from ..errors import DataError

TEXT_EXTENSIONS = (".txt", ".text")
_WHAT = ("pretraining needs text: a CSV/JSONL/Parquet table with a text column (--text-column), a .txt file "
         "(one text per line) or a folder of .txt files")


def _read(p: Path) -> str:
    return p.read_bytes().decode("utf-8", errors="replace")


def load_texts(path: str | Path, text_column: str | None = None) -> Dataset:
    """The non-empty texts at ``path`` as an unlabelled text :class:`Dataset` (labels, if any, are ignored).

    Raises:
        DataError: a missing path, no text at all (an empty file or table), or images instead of text.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"Data path '{p}' does not exist. Give a CSV/JSONL/Parquet table, a .txt file or a "
                        "folder of .txt files.")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_EXTENSIONS)
        if not files:
            images = sum(1 for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            what = f"an image folder ({images} images)" if images else "a folder without .txt files"
            raise DataError(f"'{p}' is {what}; {_WHAT}.")
        texts = [_read(f) for f in files]
        ids = [str(f.relative_to(p)) for f in files]
        ds = Dataset("text", texts, None, ids, origin=str(p))
    elif p.name.lower().endswith(TEXT_EXTENSIONS):
        lines = _read(p).splitlines()
        ds = Dataset("text", lines, None, [str(i + 1) for i in range(len(lines))], origin=str(p))
    elif p.name.lower().endswith(IMAGE_EXTENSIONS):
        raise DataError(f"'{p}' is an image; {_WHAT}.")
    else:
        ds = load_path(p, Columns(text=text_column), labelled=False)
        if ds.modality != "text":
            raise DataError(f"'{p}' holds image paths, not text; {_WHAT}.")
    keep = [i for i, t in enumerate(ds.inputs) if t.strip()]
    if not keep:
        n = len(ds)
        raise DataError(f"No text in '{p}': " + (f"all {n} texts are empty." if n else "it is empty.") +
                        f" {_WHAT[0].upper()}{_WHAT[1:]}.")
    counts = {"replaced_utf8": sum("\ufffd" in ds.inputs[i] for i in keep), "empty": len(ds) - len(keep)}
    return Dataset("text", [ds.inputs[i] for i in keep], None, [ds.ids[i] for i in keep], ds.origin,
                   counts=counts)
