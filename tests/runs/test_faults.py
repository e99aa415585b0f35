"""Faults while writing: two writers of one run name, a full disk, killed writers' leftovers (`transferkit runs`),
and concurrent / damaged feature-cache entries."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO_ROOT, cli, one_line_error
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.errors import ConfigError, DataError
from transferkit.pipeline import fit
from transferkit.runs import load_run
from transferkit.runs.inventory import clean, inventory
from transferkit.runs.lifecycle import start_run


def _snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(digits):
    X, y = digits
    return from_arrays(X[:100], y[:100])


def _cfg(runs: Path, **kw) -> FitConfig:
    return FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[1.0],
                                    runs_dir=str(runs), name="r", **kw))


def test_second_writer_of_a_run_name_gets_a_clear_error(tmp_path, small):
    runs = tmp_path / "runs"
    with start_run(runs, "r") as first:
        (first.dir / "marker.txt").write_text("first")
        with pytest.raises(ConfigError, match=f"being written by process {os.getpid()}"):
            fit(_cfg(runs, overwrite=True), train=small, progress=False)
        assert (first.dir / "marker.txt").read_text() == "first", "the second writer touched nothing"
    assert sorted(p.name for p in runs.iterdir()) == ["r"]
    assert sorted(p.name for p in (runs / "r").iterdir()) == ["fit.log", "marker.txt"]


def test_two_processes_racing_for_one_run_name(tmp_path):
    """Two real CLI fits started together on the same name: exactly one writes the run, the other exits 2 with a
    one-line error; the run is complete and consistent (its manifest verifies)."""
    table = tmp_path / "t.csv"
    rows = ["text,label"] + [f"{'cheap pills offer' if i % 2 else 'meeting notes today'} {i},{'spam' if i % 2 else 'ham'}"
                             for i in range(40)]
    table.write_text("\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "transferkit.cli.main", "--quiet", "fit", "--train", str(table), "--text-column",
           "text", "--backbone", "classical:tfidf", "--strategy", "classical", "--runs-dir", str(tmp_path / "runs"),
           "--name", "same"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert "Traceback" not in err and ("being written by" in err or "already exists" in err), err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["same"]
    load_run(tmp_path / "runs" / "same")


def _disk_full(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")


def test_full_disk_during_save_keeps_the_previous_run(tmp_path, small, monkeypatch, capsys):
    runs = tmp_path / "runs"
    run = fit(_cfg(runs), train=small, progress=False).run_dir
    before = _snapshot(run)
    import transferkit.runs.store as store

    monkeypatch.setattr(store, "save_model", _disk_full)
    with pytest.raises(DataError, match="Cannot write run .*the disk is full.*unchanged"):
        fit(_cfg(runs, overwrite=True, seed=1), train=small, progress=False)
    assert _snapshot(run) == before
    assert sorted(p.name for p in runs.iterdir()) == ["r"], "no partial folder, lock or temp file left"
    load_run(run)


def test_full_disk_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    import transferkit.runs.store as store

    table = tmp_path / "t.csv"
    table.write_text("text,label\n" + "".join(f"word{i % 3} text {i},{'ab'[i % 2]}\n" for i in range(30)))
    monkeypatch.setattr(store, "save_model", _disk_full)
    code = cli("--quiet", "fit", "--train", table, "--text-column", "text", "--backbone", "classical:tfidf",
               "--strategy", "classical", "--runs-dir", tmp_path / "runs", "--name", "x")
    assert code == 2
    assert "disk is full" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "runs" / "x").exists() and list((tmp_path / "runs").iterdir()) == []


def test_leftovers_are_listed_and_cleaned(tmp_path, small, capsys):
    runs = tmp_path / "runs"
    fit(_cfg(runs), train=small, progress=False)
    stale = runs / ".killed.partial"
    stale.mkdir()
    (stale / ".owner.json").write_text(json.dumps({"pid": 2 ** 22 + 12345}))  # no such process
    live = runs / ".busy.partial"
    live.mkdir()
    (live / ".owner.json").write_text(json.dumps({"pid": os.getpid()}))
    resumable = runs / ".paused.partial" / "checkpoint" / "ph"
    resumable.mkdir(parents=True)
    (resumable / "done.json").write_text("{}")
    (runs / "x.json.tmp-77").write_text("{")
    states = {e.name: e.state for e in inventory(runs)}
    assert states == {"r": "complete", "killed": "stale", "busy": "writing", "paused": "resumable",
                      "x.json.tmp-77": "temp"}

    assert cli("runs", "clean", "--runs-dir", runs) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "killed" in out
    assert sorted(p.name for p in runs.iterdir()) == [".busy.partial", ".paused.partial", "r"]
    removed = clean(inventory(runs), include_resumable=True)
    assert [e.name for e in removed] == ["paused"]
    assert sorted(p.name for p in runs.iterdir()) == [".busy.partial", "r"]


def test_runs_lists_a_damaged_run_and_exits_2(tmp_path, small, capsys):
    runs = tmp_path / "runs"
    run = fit(_cfg(runs), train=small, progress=False).run_dir
    (run / "labels.json").write_text("{}")  # other size than recorded
    assert cli("runs", "list", "--runs-dir", runs) == 2
    assert "damaged: Run '" in capsys.readouterr().out


def test_only_copy_of_a_run_left_by_an_interrupted_overwrite_is_kept(tmp_path, small):
    runs = tmp_path / "runs"
    run = fit(_cfg(runs), train=small, progress=False).run_dir
    old = runs / f".r.old-{2 ** 22 + 999}"
    os.replace(run, old)  # killed between the two renames of an --overwrite
    entries = inventory(runs)
    assert [(e.name, e.state) for e in entries] == [("r", "old-copy")] and "move this folder back" in entries[0].detail
    assert clean(entries) == [] and old.is_dir()


# -- feature cache ----------------------------------------------------------------------------------------------
@pytest.fixture
def cache_setup(tmp_path, small):
    from transferkit.backbones import create_backbone
    from transferkit.features.cache import FeatureCache
    from transferkit.features.inputs import Inputs

    bb = create_backbone("scratch:cnn", image_size=16, seed=0)
    return FeatureCache(tmp_path / "cache"), bb, Inputs(small, bb)


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b[:20], lambda b: b"not numpy at all"])
def test_corrupt_cache_entry_is_recomputed(cache_setup, damage):
    cache, bb, inputs = cache_setup
    ref = cache.get_or_compute(bb, inputs, progress=False)
    (entry,) = list(cache.root.glob("*.npy"))
    entry.write_bytes(damage(entry.read_bytes()))
    again = cache.get_or_compute(bb, inputs, progress=False)
    np.testing.assert_array_equal(again, ref)
    assert cache.misses == 2
    np.testing.assert_array_equal(np.load(entry), ref)


def test_concurrent_fills_of_one_cache_entry_leave_a_valid_entry(cache_setup):
    from transferkit.features.cache import FeatureCache

    cache, bb, inputs = cache_setup
    results, errors = [], []

    def work():
        try:
            results.append(FeatureCache(cache.root).get_or_compute(bb, inputs, progress=False))
        except Exception as e:  # noqa: BLE001  (any failure fails the test below)
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    (entry,) = list(cache.root.glob("*.npy"))
    assert not list(cache.root.glob("*.tmp")), "no temp file left"
    for r in results:
        np.testing.assert_array_equal(r, np.load(entry))


def test_cache_write_failure_is_only_a_warning(cache_setup, monkeypatch, caplog):
    cache, bb, inputs = cache_setup

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    feats = cache.get_or_compute(bb, inputs, progress=False)
    assert feats.shape[0] == len(inputs)
    assert list(cache.root.iterdir()) == [], "no entry and no temp file"
    assert "not written" in caplog.text
