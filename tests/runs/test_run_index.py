"""The run store: `transferkit runs list / show / compare / rm` over an index that follows the folders."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO_ROOT, cli, one_line_error
from transferkit.config import FitConfig
from transferkit.data import Dataset
from transferkit.errors import ConfigError
from transferkit.pipeline import fit
from transferkit.runs.index import INDEX, parse_filter, refresh, select
from transferkit.runs.lifecycle import start_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three real classical text runs with different seeds and C grids, so settings and metrics differ."""
    runs = tmp_path_factory.mktemp("store")
    words = {"a": "invoice meeting report team notes", "b": "prize winner cash offer free"}
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words["ab"[i % 2]].split(), 4)) + f" {i}" for i in range(80)]
    ds = Dataset("text", texts, np.asarray(["ab"[i % 2] for i in range(80)], dtype=object), origin="synthetic")
    for name, seed, grid in [("r1", 0, [1.0]), ("r2", 1, [0.01]), ("r3", 2, [1.0])]:
        fit(FitConfig.from_dict(dict(backbone="classical:tfidf", strategy="classical", seed=seed, probe_grid=grid,
                                     runs_dir=str(runs), name=name)), train=ds, progress=False)
    return runs


def _copy(store, tmp_path):
    dst = tmp_path / "runs"
    shutil.copytree(store, dst)
    return dst


def test_index_follows_the_folders(store, tmp_path):
    runs = _copy(store, tmp_path)
    names = [e["name"] for e in refresh(runs)]
    assert names == ["r1", "r2", "r3"] and (runs / INDEX).is_file()
    shutil.copytree(runs / "r1", runs / "r4")  # copied in by hand
    shutil.rmtree(runs / "r2")
    info = json.loads((runs / "r3" / "run.json").read_text())
    info["seed"] = 99
    (runs / "r3" / "run.json").write_text(json.dumps(info) + " ")
    metrics = json.loads((runs / "r3" / "metrics.json").read_text())
    metrics["test"]["macro_f1"] = 0.123
    (runs / "r3" / "metrics.json").write_text(json.dumps(metrics))
    entries = {e["name"]: e for e in refresh(runs)}
    assert sorted(entries) == ["r1", "r3", "r4"]
    assert entries["r3"]["metrics"]["macro_f1"] == 0.123, "a changed run.json makes its run re-read"
    on_disk = json.loads((runs / INDEX).read_text())["runs"]
    assert sorted(on_disk) == ["r1", "r3", "r4"]
    (runs / INDEX).write_text("{damaged")
    assert [e["name"] for e in refresh(runs)] == ["r1", "r3", "r4"], "a damaged index is rebuilt"


def test_filter_and_sort(store):
    entries = refresh(store)
    assert [e["name"] for e in select(entries, "seed>=1")] == ["r2", "r3"]
    assert [e["name"] for e in select(entries, "probe_grid~0.01")] == ["r2"]
    by_f1 = select(entries, sort="macro_f1")
    f1s = [e["metrics"]["macro_f1"] for e in by_f1]
    assert f1s == sorted(f1s, reverse=True)
    assert [e["name"] for e in select(entries, "name=r1, kind=fit")] == ["r1"]
    with pytest.raises(ConfigError, match="is not KEY OP VALUE"):
        parse_filter("macro_f1 about 3")


def test_cli_list_formats(store, capsys):
    assert cli("runs", "list", "--runs-dir", store, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["r1", "r2", "r3"]
    assert all("macro_f1" in d["metrics"] and d["settings"]["strategy"] == "classical" for d in data)
    assert cli("runs", "list", "--runs-dir", store, "--md", "--sort", "seed", "--asc") == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| name | kind |") and [ln.split("|")[1].strip() for ln in md[2:5]] == ["r1", "r2", "r3"]


def test_cli_compare_shows_changed_settings_and_metric_differences(store, capsys):
    assert cli("runs", "compare", "r1", "r2", "--runs-dir", store, "--only-changed") == 0
    out = capsys.readouterr().out
    rows = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert "seed" in rows and "probe_grid" in rows and "strategy" not in rows
    r1 = json.loads((store / "r1" / "metrics.json").read_text())["test"]["macro_f1"]
    r2 = json.loads((store / "r2" / "metrics.json").read_text())["test"]["macro_f1"]
    if r1 != r2:
        assert f"({r2 - r1:+.4f})" in out
    assert cli("runs", "compare", "r1", "--runs-dir", store) == 2
    assert "two or more" in one_line_error(capsys.readouterr().err)


def test_cli_show_and_rm(store, tmp_path, capsys):
    runs = _copy(store, tmp_path)
    assert cli("runs", "show", "r1", "--runs-dir", runs) == 0
    assert "all match their SHA-256" in capsys.readouterr().out
    (runs / "r1" / "labels.json").write_text("{}")
    assert cli("runs", "show", "r1", "--runs-dir", runs) == 2
    assert "DAMAGED" in capsys.readouterr().out
    assert cli("runs", "rm", "r2", "--runs-dir", runs) == 2, "no terminal and no --yes"
    assert (runs / "r2").is_dir()
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="abort"), start_run(runs, "r3", overwrite=True):
        assert cli("runs", "rm", "r3", "--runs-dir", runs, "--yes") == 2
        assert "being written" in one_line_error(capsys.readouterr().err)
        raise RuntimeError("abort the overwrite: r3 stays as it was")
    assert cli("runs", "rm", "r2", "--runs-dir", runs, "--yes") == 0
    assert not (runs / "r2").exists()
    assert [e["name"] for e in refresh(runs)] == ["r1", "r3"]
    assert cli("runs", "show", "nope", "--runs-dir", runs) == 2
    assert "No run 'nope'" in one_line_error(capsys.readouterr().err)


def test_runs_list_does_not_import_torch(store):
    code = ("import sys; from transferkit.cli.main import main; rc = main(['runs', 'list', '--runs-dir', sys.argv[1]]);"
            " assert rc == 0; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'heavy import'")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "r1" in out.stdout
