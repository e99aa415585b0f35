"""What a runs folder holds: complete runs, and what killed or failed writers left behind (partial folders, an
old copy swapped out by an interrupted ``--overwrite``, stray temp files), with a way to clean the leftovers."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .integrity import MANIFEST, read_run_json, verify
from .lifecycle import owner_pid, process_alive, resumable, resume_command

PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial$")
OLD_COPY = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")
TEMP = re.compile(r"\.tmp(-\d+)?$")


@dataclass(frozen=True)
class Entry:
    """One item of a runs folder. ``state``: complete | damaged | unchecked (no manifest) | writing | resumable |
    stale (a killed writer's partial folder, nothing to resume) | old-copy | temp."""

    name: str
    path: Path
    state: str
    detail: str = ""

    @property
    def leftover(self) -> bool:
        return self.state in ("stale", "resumable", "old-copy", "temp")


def _run_entry(p: Path, check: bool) -> Entry:
    try:
        info = read_run_json(p)
        verify(p, info, hashes=check)
    except DataError as e:
        return Entry(p.name, p, "damaged", str(e))
    kind = info.get("kind", "fit")
    if MANIFEST not in info:
        return Entry(p.name, p, "unchecked", f"{kind} run written before SHA-256 manifests")
    return Entry(p.name, p, "complete", f"{kind} run, {len(info[MANIFEST])} files"
                 + (", SHA-256 verified" if check else ", sizes checked (--verify: SHA-256)"))


def _partial_entry(p: Path, name: str) -> Entry:
    final = p.parent / name
    pid = owner_pid(p)
    if pid is not None and process_alive(pid):
        return Entry(name, p, "writing", f"being written by process {pid}")
    ck = resumable(final)
    if ck is not None:
        verb = next((v for v in ("adapt", "pretrain") if (p / f"{v}.log").exists()), "fit")
        return Entry(name, p, "resumable", f"stopped at {ck['where']}; continue with "
                     f"`{resume_command(final, verb)}`")
    return Entry(name, p, "stale", "left by a killed or failed writer; nothing to resume")


def inventory(runs_dir: str | Path, check: bool = False) -> list[Entry]:
    """Every run and leftover under ``runs_dir`` (``check``: verify each complete run's SHA-256 manifest)."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise DataError(f"Runs folder '{root}' does not exist. Pass the --runs-dir your fits used.")
    out = []
    for p in sorted(root.iterdir()):
        if m := PARTIAL.match(p.name):
            out.append(_partial_entry(p, m["name"]))
        elif m := OLD_COPY.match(p.name):
            alive = process_alive(int(m["pid"]))
            restore = "" if (root / m["name"]).exists() else f"; '{m['name']}' is missing: move this folder back to restore it"
            out.append(Entry(m["name"], p, "writing" if alive else "old-copy",
                             f"earlier copy swapped out by an --overwrite{restore}"))
        elif p.is_file() and TEMP.search(p.name):
            out.append(Entry(p.name, p, "temp", "temporary file of an interrupted write"))
        elif p.is_dir() and not p.name.startswith(".") and (p / "run.json").exists():
            out.append(_run_entry(p, check))
    return out


def clean(entries: list[Entry], include_resumable: bool = False) -> list[Entry]:
    """Remove stale partial folders, temp files and old copies whose run exists again (and resumable partial
    folders when asked); never a run, a folder being written, or the only copy of a run. Returns what went."""
    removed = []
    for e in entries:
        if e.state == "old-copy" and not (e.path.parent / e.name).exists():
            continue  # the only copy left
        if e.state in ("stale", "old-copy", "temp") or (e.state == "resumable" and include_resumable):
            if e.path.is_dir():
                shutil.rmtree(e.path)
            else:
                e.path.unlink(missing_ok=True)
            removed.append(e)
    return removed
