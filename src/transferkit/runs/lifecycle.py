"""The one run lifecycle: every writer of a run directory (fit, adapt, pretrain, estimators, evaluate) goes through
:func:`start_run`.

A run is built in ``runs/.NAME.partial`` (with an ``.owner.json`` naming the writing process) and renamed to
``runs/NAME`` only when complete. When the writer fails or is killed after a training checkpoint was written,
the partial folder stays and ``transferkit fit --resume runs/NAME`` continues it; without a checkpoint a
failed run leaves nothing behind.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..errors import ConfigError, DataError
from .integrity import seal

log = logging.getLogger("transferkit")
OWNER = ".owner.json"
CHECKPOINT_DIR = "checkpoint"
PHASE_DONE = "done.json"  # a finished training phase of a multi-phase run (adapt), beside that phase's checkpoints
PHASE_TENSORS = "done.safetensors"  # that phase's trained tensors, written before PHASE_DONE


def partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def finish_phase(root: Path, write_tensors: Callable[[Path], None], record: dict[str, Any]) -> None:
    """Mark a training phase finished under ``root``: ``write_tensors(path)`` writes its tensors (safetensors) to a
    temporary file that is then renamed, and ``record`` (JSON) lands last, so that a crash in between leaves the
    phase unfinished, never half-written. A resumed run reads it back with :func:`finished_phase`."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (PHASE_TENSORS + ".tmp")
    write_tensors(tmp)
    os.replace(tmp, root / PHASE_TENSORS)
    write_json_atomic(root / PHASE_DONE, record)


def finished_phase(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """(tensor file, record) of a phase :func:`finish_phase` finished under ``root``, or None."""
    if not (root / PHASE_DONE).is_file():
        return None
    try:
        record = json.loads((root / PHASE_DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"Phase record '{root / PHASE_DONE}' cannot be read ({e}); delete that folder to train the "
                        "phase again.") from None
    return root / PHASE_TENSORS, record


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_pid(tmp: Path) -> int | None:
    try:
        return int(json.loads((tmp / OWNER).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def resumable(final: Path) -> dict[str, Any] | None:
    """Where an interrupted run at ``final`` stopped (its newest checkpoint, or a finished training phase), or None."""
    root = partial_dir(final) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    from ..engine.checkpoint import checkpoint_summary  # torch: only where a checkpoint exists

    summary = checkpoint_summary(root)
    if summary is None and any(root.glob(f"*/{PHASE_DONE}")):
        summary = {"where": "after a finished training phase"}
    return summary


def resume_command(final: Path, verb: str = "fit") -> str:
    return f"transferkit {verb} --resume {final.as_posix()}"


@dataclass
class RunHandle:
    """The run being written: files go into ``dir``; ``checkpoints`` is where training checkpoints live."""

    final: Path
    dir: Path
    resumed: bool
    verb: str = "fit"

    @property
    def checkpoints(self) -> Path:
        return self.dir / CHECKPOINT_DIR

    @property
    def resume_hint(self) -> str:
        return resume_command(self.final, self.verb)

    def pin_config(self, config: Any, filename: str) -> None:
        """Keep the requested config (a ``YamlConfig``) beside the checkpoints on a first start; on a resume,
        refuse settings that differ from the ones the run was started with (one line naming the keys)."""
        from ..config import refuse_changed_settings

        saved = self.checkpoints / filename
        if self.resumed:
            refuse_changed_settings(type(config).from_yaml(saved).to_dict(), config.to_dict())
        else:
            self.checkpoints.mkdir()
            saved.write_text(config.to_yaml(), encoding="utf-8")


def requested_config(run_path: str | Path, cls: type, filename: str, verb: str) -> Any:
    """The config (of type ``cls``) an interrupted run at ``run_path`` was started with (see ``pin_config``)."""
    p = partial_dir(Path(run_path)) / CHECKPOINT_DIR / filename
    if not p.exists():
        raise DataError(f"Nothing to resume at '{run_path}': no interrupted {verb} run with a checkpoint there "
                        f"({p.parent.parent} holds none). Start it with `transferkit {verb}`.")
    return cls.from_yaml(p)


@contextmanager
def start_run(runs_dir: str | Path, name: str, *, overwrite: bool = False, resume: bool = False,
              log_file: str = "fit.log", verb: str = "fit") -> Iterator[RunHandle]:
    """Own the run's lock, the partial folder, the log file handler, the commit (with the integrity manifest, see
    :mod:`.integrity`) and the abort of one run.

    Raises:
        ConfigError: the run exists (and no ``overwrite``), another process is writing it, or a resumable
            interrupted run of that name exists (and neither ``resume`` nor ``overwrite``).
        DataError: ``resume`` but there is nothing to resume; the disk is full or not writable.
    """
    final = Path(runs_dir) / name
    tmp = partial_dir(final)
    with _disk_errors(final), _writer_lock(final):
        _prepare(final, tmp, overwrite, resume, verb)
        write_json_atomic(tmp / OWNER, {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        handler = logging.FileHandler(tmp / log_file, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        run = RunHandle(final, tmp, resume, verb)
        try:
            yield run
            _close(handler)
            shutil.rmtree(run.checkpoints, ignore_errors=True)
            (tmp / OWNER).unlink(missing_ok=True)
            seal(tmp)
        except BaseException:
            _close(handler)
            if (tmp / CHECKPOINT_DIR).exists() and resumable(final) is not None:
                (tmp / OWNER).unlink(missing_ok=True)  # kept, so that it can be resumed
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        _commit(final, tmp)


def _prepare(final: Path, tmp: Path, overwrite: bool, resume: bool, verb: str) -> dict[str, Any] | None:
    """Check what is at ``final`` and its partial folder against the request; make a fresh partial folder."""
    ck = resumable(final)
    if resume:
        if ck is None:
            raise DataError(f"Nothing to resume at '{final}': no interrupted run with a checkpoint ({tmp} "
                            f"{'has no checkpoint' if tmp.is_dir() else 'does not exist'}). Start it with "
                            f"`transferkit {verb}`.")
        return ck
    if final.exists() and not overwrite:
        raise ConfigError(f"Run '{final}' already exists. Pick another --name or pass --overwrite.")
    if ck is not None and not overwrite:
        raise ConfigError(f"A resumable {verb} of '{final.name}' exists (stopped at {ck['where']}). Resume it with "
                          f"`{resume_command(final, verb)}`, or pass --overwrite to start over.")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return ck


def _commit(final: Path, tmp: Path) -> None:
    """Rename the finished partial folder into place (an existing run is swapped out, then removed)."""
    if final.exists():
        trash = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def lock_path(final: Path) -> Path:
    return final.parent / f".{final.name}.lock"


@contextmanager
def _writer_lock(final: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``runs/.NAME.lock`` for the whole write: a second writer of the same run name
    fails at once with a clear error. The kernel drops the lock when its process dies, so it never goes stale."""
    final.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(final)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = owner_pid(partial_dir(final))
            who = f"process {pid}" if pid is not None else "another process"
            raise ConfigError(f"Run '{final}' is being written by {who}; wait for it to finish or pick another "
                              "--name.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # not a lock file another writer just removed
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


DISK_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


@contextmanager
def _disk_errors(final: Path) -> Iterator[None]:
    """A full, read-only or forbidden disk while writing a run: one line naming the run (the partial folder is
    already removed, an earlier run of that name is untouched)."""
    try:
        yield
    except OSError as e:
        inside = e.filename is not None and Path(str(e.filename)).resolve().is_relative_to(final.parent.resolve())
        if e.errno not in DISK_ERRORS or (e.errno == errno.EACCES and not inside):
            raise
        where = f" ({e.filename})" if e.filename else ""
        raise DataError(f"Cannot write run '{final}': {DISK_ERRORS[e.errno]}{where}. Nothing was written and any "
                        "earlier run of that name is unchanged; free space (or fix the permissions) and run "
                        "again.") from None


def _close(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


def remove_run(final: Path) -> None:
    """Delete a complete run: under its writer lock (refused while it is being written), renamed out of the way
    first so that it disappears at once, then its run-index entry dropped."""
    from .index import forget

    with _writer_lock(final):
        trash = final.parent / f".{final.name}.rm-{os.getpid()}"
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    forget(final)
