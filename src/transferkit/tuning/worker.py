"""Running trials until the study holds N finished ones: in this process, or in K local worker processes
(``python -m transferkit.tuning SPEC INDEX``) that share the storage, each loading the data once.

Local workers take a file lock from counting the trials until their new trial exists, so together they never
start more than N. (Workers on other machines, sharing only a PostgreSQL storage, can overshoot by at most one
trial each.) A worker whose peers are running the last trials waits for them: if a peer was killed, its trial
is marked FAIL once its heartbeat is stale and the worker runs a replacement.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import FitConfig
from ..errors import ConfigError, TransferkitError
from .config import TuneConfig
from .objective import CAUGHT, Objective
from .search import PRUNERS, SAMPLERS
from .space import SearchSpace, parse_space
from .storage import counts, fail_stale, identity, is_repeat, open_storage, open_study

MAX_FAILURES_IN_A_ROW = 5
# proposals in a row that repeat fitted configs before the search stops: the sampler finds nothing new (a space of
# few distinct configs, all fitted). Each costs one sampler call, no fitting.
MAX_REPEATS_IN_A_ROW = 100


class TrialSlot:
    """An exclusive ``flock`` on ``path`` (a no-op where ``fcntl`` is missing); release is idempotent."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd = path, None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock across local workers
            return
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def sampler_for(settings: TuneConfig, base: FitConfig, worker: int, trials_before: int, given: Any = None) -> Any:
    """The named sampler, seeded by the config's seed; a worker other than the first, or a continued study, gets
    a seed derived from (seed, trials so far, worker) so that it does not replay earlier proposals."""
    if given is not None:
        return given
    seed = settings.seed if settings.seed is not None else base.seed
    if worker or trials_before:
        import numpy as np

        seed = int(np.random.SeedSequence([seed, trials_before, worker]).generate_state(1)[0])
    return SAMPLERS.get(settings.sampler)(seed)


def session(base: FitConfig, space: SearchSpace, settings: TuneConfig, splits: Any, cache: Any, worker: int = 0,
            sampler: Any = None, pruner: Any = None) -> tuple[Any, Objective]:
    """The study (created or continued, checked against this setup) and the objective of one tuner process."""
    metric, direction = settings.metric_for(base.task)
    storage = open_storage(settings.storage, settings.heartbeat)
    pruner = pruner if pruner is not None else PRUNERS.get(settings.pruner)(space.max_epochs(base))
    study = open_study(storage, settings.study, None, pruner, identity(space, base, metric, direction))
    study.sampler = sampler_for(settings, base, worker, len(study.get_trials(deepcopy=False)), sampler)
    return study, Objective(base, space, splits, metric, direction, cache)


def run_trials(study: Any, objective: Objective, n_trials: int, deadline: float | None, slot: TrialSlot,
               on_trial: Callable[[Any], None] | None = None, poll: float = 0.5) -> int:
    """Run trials until ``study`` has ``n_trials`` finished (complete or pruned) or ``deadline`` (``time.time()``)
    passes; returns how many this process ran. A trial failing with a ConfigError / DataError is FAIL and the
    search goes on, unless 5 fail in a row. A proposal repeating a fitted config is skipped (not run, not
    counted), and the next proposal is a random draw (seeded by the study's size) instead of the study's
    sampler's: a model-based sampler that has settled on a fitted config (TPE on a linear probe, whose few distinct
    configs are soon all fitted) would otherwise propose it again and again.
    After 100 repeats in a row the search stops: the space has nothing new left."""
    from .search import optuna_module

    ran = failures = repeats = 0
    sampler = study.sampler
    explorer = optuna_module().samplers.RandomSampler(seed=len(study.get_trials(deepcopy=False)))
    last: list[Any] = []

    def releasing(trial: Any) -> float:
        changes = objective.draw(trial)  # under the slot: no other local worker draws (and misses) the same config
        slot.release()  # the trial exists (RUNNING) with its parameters: other workers may count it and start theirs
        return objective(trial, changes)

    try:
        while deadline is None or time.time() < deadline:
            slot.acquire()
            try:
                fail_stale(study)
                c = counts(study)
                if c["finished"] >= n_trials:
                    break
                busy = c["finished"] + c["running"] >= n_trials  # the last trials are running elsewhere
                if not busy:
                    study.optimize(releasing, n_trials=1, catch=CAUGHT, gc_after_trial=False,
                                   callbacks=[lambda s, t: last.append(t)])
            finally:
                slot.release()
            if busy:
                time.sleep(poll)
                continue
            trial = last.pop() if last else None
            repeated = trial is not None and is_repeat(trial)
            study.sampler = explorer if repeated else sampler
            if repeated:
                repeats += 1
                if repeats >= MAX_REPEATS_IN_A_ROW:
                    print(f"transferkit: tune: the last {repeats} proposals all repeated configs already fitted; "
                          "stopping the search (its space has nothing new left).", file=sys.stderr, flush=True)
                    break
                continue
            ran, repeats = ran + 1, 0
            gc.collect()  # after each fitted trial (not after a skipped repeat, which allocated nothing)
            failures = failures + 1 if trial is not None and trial.state.name == "FAIL" else 0
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise ConfigError(f"{failures} trials in a row failed; the last (#{trial.number}, {trial.params}): "
                                  f"{trial.user_attrs.get('error', 'see the log')}")
            if on_trial is not None:
                on_trial(study)
    finally:
        study.sampler = sampler
    return ran


# -- worker processes ------------------------------------------------------------------------------------------
def spawn(spec: dict[str, Any], out_dir: Path, k: int) -> list[tuple[subprocess.Popen, Path]]:
    """Start ``k`` worker processes on ``spec`` (written to ``out_dir/workers/spec.json``); their output goes to
    ``workers/worker-I.log``."""
    d = out_dir / "workers"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "spec.json"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    procs = []
    for i in range(1, k + 1):
        log = d / f"worker-{i}.log"
        with open(log, "w", encoding="utf-8") as f:
            p = subprocess.Popen([sys.executable, "-m", "transferkit.tuning", str(path), str(i)],
                                 stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append((p, log))
    return procs


def wait_for(procs: list[tuple[subprocess.Popen, Path]], on_tick: Callable[[], None], tick: float = 1.0) -> None:
    """Wait for every worker (``on_tick`` between polls); a failed worker is a one-line error naming its log.
    Ctrl-C terminates them all."""
    try:
        while any(p.poll() is None for p, _ in procs):
            time.sleep(tick)
            on_tick()
    except KeyboardInterrupt:
        for p, _ in procs:
            p.terminate()
        for p, _ in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    on_tick()
    for i, (p, log) in enumerate(procs, start=1):
        if p.returncode != 0:
            lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            raise TransferkitError(f"Tuning worker {i} exited with code {p.returncode}: "
                                   f"{lines[-1] if lines else 'no output'} (log: {log})")


def worker_main(spec: dict[str, Any], index: int) -> int:
    """One worker process: load the data once, run trials until the study is done."""
    from ..features import FeatureCache
    from ..pipeline import load_splits
    from .search import optuna_module

    optuna_module().logging.set_verbosity(optuna_module().logging.WARNING)
    base = FitConfig.from_dict(spec["base"])
    space = parse_space(spec["space"], spec.get("where", "space"))
    settings = TuneConfig.from_dict(spec["settings"]).validate()
    splits = load_splits(base)
    study, objective = session(base, space, settings, splits, FeatureCache(engine=base.engine), worker=index)
    if base.num_threads is None:  # K workers share the cores instead of each taking all of them
        objective.base = base.updated(num_threads=max(1, (os.cpu_count() or 1) // settings.workers))
    ran = run_trials(study, objective, settings.trials, spec.get("deadline"), TrialSlot(Path(spec["lock"])))
    print(f"worker {index}: ran {ran} trials; study: {counts(study)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        return worker_main(spec, int(args[1]))
    except TransferkitError as e:
        print(f"transferkit: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
