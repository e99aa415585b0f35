"""``export_run``: a run folder -> an export folder (model, loading files, parity.json, README.md model card).

Everything is written into a hidden temporary folder beside the target and renamed into place at the end, so an
export folder is complete or absent; an existing one is refused unless ``overwrite``. The parity check runs the
*written* folder with the format's runtime on sample inputs and compares with the run's PyTorch predictions; a
failed check still leaves the export (to inspect), marked in parity.json and the card, warns, and makes the CLI
exit with code 3.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .formats import FORMATS

if TYPE_CHECKING:  # pragma: no cover
    from .parity import Parity

PARITY = "parity.json"
CARD = "README.md"
PARITY_FAILED_EXIT = 3  # the CLI's exit code when the export was written but disagrees with the run


@dataclass(frozen=True)
class ExportResult:
    """A finished export: its folder, format, parity check and files (names inside ``path``)."""

    path: Path
    format: str
    parity: Parity
    files: list[str]

    @property
    def ok(self) -> bool:
        """Whether the parity check passed."""
        return self.parity.ok


def default_out(run_path: str | Path, fmt: str) -> Path:
    """``RUN/export-FORMAT``."""
    return Path(run_path) / f"export-{fmt}"


def _check_target(out: Path, run_path: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"Export target '{out}' is a file. Choose a folder with -o.")
    if out.exists() and not overwrite:
        raise ConfigError(f"Export folder '{out}' already exists. Pass --overwrite to replace it, or choose another "
                          "folder with -o.")
    run_abs, out_abs = run_path.resolve(), out.resolve()
    if out_abs == run_abs or out_abs in run_abs.parents:
        raise ConfigError(f"Export folder '{out}' holds the run '{run_path}' itself. Choose another folder with -o "
                          f"(default: {default_out(run_path, 'FORMAT')}).")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is swapped out first and removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:  # put the earlier export back
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _printer(progress: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if progress:
            print(f"export: {msg}", file=sys.stderr, flush=True)

    return say


def export_run(run_path: str | Path, format: str = "onnx", out: str | Path | None = None, *,
               sample: str | Path | None = None, overwrite: bool = False, progress: bool = False) -> ExportResult:
    """Export the run at ``run_path`` in ``format`` (``FORMATS``: onnx, onnx-int8, hf) into ``out``.

    Args:
        run_path: a folder written by ``transferkit fit``.
        format: a registered export format.
        out: the export folder (default ``RUN/export-FORMAT``); it must not exist unless ``overwrite``.
        sample: data for the parity check (image files / folder, a .txt with one text per line, a table; its first
            64 rows); default: synthetic inputs.
        overwrite: replace an existing ``out``.
        progress: say each step on stderr.

    Returns:
        The :class:`ExportResult`. A failed parity check does not raise: ``result.ok`` is False, parity.json and
        the card say so, and a ``RuntimeWarning`` is issued.

    Raises:
        ConfigError: an unknown format, a run the format cannot express (the message names the format that
            works), an existing ``out``.
        DataError: a missing or damaged run, unusable sample data.
    """
    from ..runs import load_run
    from .card import model_card
    from .parity import compare, diff_scale, reference_outputs
    from .samples import sample_dataset

    fmt = FORMATS.get(format)
    say = _printer(progress)
    run_path = Path(run_path)
    out = Path(os.path.abspath(out if out is not None else default_out(run_path, format)))  # "." has a name too
    _check_target(out, run_path, overwrite)
    run = load_run(run_path)
    fmt.check(run)
    samples, origin = sample_dataset(run, sample)
    task = "classification" if run.label_map is not None else "regression"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.exporting"
    tmp.mkdir()  # (not mkdtemp: its 0700 would become the export's permissions)
    try:
        details = fmt.write(run, tmp, samples, say)
        say(f"checking parity on {len(samples)} {origin} inputs")
        parity = compare(reference_outputs(run, samples), fmt.predict(run, tmp, samples), task, fmt.rules[task],
                         format, origin, diff_scale(run))
        (tmp / PARITY).write_text(json.dumps(parity.to_dict(), indent=1), encoding="utf-8")
        (tmp / CARD).write_text(model_card(run, fmt, details, parity), encoding="utf-8")
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not parity.ok:
        warnings.warn(f"Export '{out}' disagrees with its run: {parity.summary()}", RuntimeWarning, stacklevel=2)
    return ExportResult(out, format, parity, files)


__all__ = ["CARD", "PARITY", "PARITY_FAILED_EXIT", "ExportResult", "default_out", "export_run"]
