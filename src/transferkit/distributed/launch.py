"""``transferkit fit|pretrain|adapt|distill --nproc-per-node N``: the same command re-run by ``torch.distributed.run``
(torchrun) in N processes on this machine. The resolved settings go to the workers as a YAML config, so every
process trains exactly what was asked; across machines, run ``torchrun --nnodes ... -m transferkit.cli.main fit
...`` yourself (see docs/scaling.md)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m transferkit.cli.main ARGS``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "transferkit.cli.main", *args]


def worker_env(nproc: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: this one, with OpenMP threads shared out among the N processes (torchrun
    would set 1 and warn) unless ``OMP_NUM_THREADS`` is set already."""
    env = dict(os.environ if base is None else base)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def run_under_torchrun(nproc: int, args: list[str]) -> int:
    """Run ``transferkit ARGS`` in ``nproc`` processes under torchrun; returns torchrun's exit status.

    SIGTERM sent to this process is passed on to torchrun (which passes it on to every worker: they checkpoint
    and stop); Ctrl-C reaches them all directly, so this process only waits.
    """
    proc = subprocess.Popen(torchrun_command(nproc, args), env=worker_env(nproc))
    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda sig, frame: proc.send_signal(sig))
        saved[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def launch(command: str, config: Any, nproc: int, resume: str | None = None, quiet: bool = False) -> int:
    """Re-run ``transferkit COMMAND`` (fit, pretrain, adapt, distill) with ``config`` (its validated config) in
    ``nproc`` processes.

    Raises:
        ConfigError: ``nproc`` is not an integer >= 1.
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc-per-node must be an integer >= 1, got {nproc!r}.")
    with tempfile.TemporaryDirectory(prefix="transferkit-launch-") as tmp:
        path = Path(tmp) / f"{command}.yaml"
        path.write_text(config.to_yaml(), encoding="utf-8")
        args = ["--quiet"] if quiet else []
        args += [command, "--config", str(path), *(["--resume", resume] if resume else [])]
        return run_under_torchrun(nproc, args)
