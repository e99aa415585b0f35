"""Run integrity: the SHA-256 manifest in run.json, clean errors for damaged runs (Python API, CLI, run:PATH),
and a fuzz of damaged run folders."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import cli, one_line_error
from transferkit.backbones import create_backbone
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.errors import DataError
from transferkit.pipeline import fit
from transferkit.runs import load_run


@pytest.fixture(scope="module")
def digit_arrays(digits):
    X, y = digits
    return X[:120], y[:120]


@pytest.fixture(scope="module")
def sealed_run(tmp_path_factory, digit_arrays):
    """A small scratch-CNN linear-probe run (complete, with its manifest)."""
    X, y = digit_arrays
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[1.0],
                                   runs_dir=str(tmp_path_factory.mktemp("runs")), name="sealed"))
    return fit(cfg, train=from_arrays(X, y), progress=False).run_dir


@pytest.fixture
def copy_of(sealed_run, tmp_path):
    def make(name="copy"):
        dst = tmp_path / name
        shutil.copytree(sealed_run, dst)
        return dst

    return make


def test_run_json_lists_every_file_with_its_sha256(sealed_run):
    info = json.loads((sealed_run / "run.json").read_text())
    files = {p.relative_to(sealed_run).as_posix() for p in sealed_run.rglob("*") if p.is_file()} - {"run.json"}
    assert set(info["files"]) == files
    for rel, want in info["files"].items():
        data = (sealed_run / rel).read_bytes()
        assert want == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert not list(sealed_run.parent.glob(".*")), "no lock or partial folder left beside the run"


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, name, expect", [
    ("flip", "model.safetensors", "'model.safetensors' differs from the SHA-256"),
    ("truncate", "model.safetensors", "'model.safetensors' differs from the SHA-256"),
    ("delete", "labels.json", "'labels.json' is missing"),
    ("flip", "config.yaml", "'config.yaml' differs"),
])
def test_damaged_file_is_named(copy_of, damage, name, expect):
    run = copy_of()
    p = run / name
    if damage == "flip":
        _flip_byte(p)
    elif damage == "truncate":
        p.write_bytes(p.read_bytes()[:100])
    else:
        p.unlink()
    with pytest.raises(DataError, match=expect):
        load_run(run)


def _legacy(run: Path) -> Path:
    """The run as written before manifests existed (run.json without 'files')."""
    info = json.loads((run / "run.json").read_text())
    info.pop("files")
    (run / "run.json").write_text(json.dumps(info))
    return run


@pytest.mark.parametrize("name, content, expect", [
    ("model.safetensors", b"\x00" * 50, "model.safetensors' is damaged \\(not a readable safetensors"),
    ("model.safetensors", np.random.default_rng(0).bytes(4000), "model.safetensors' is damaged"),
    ("labels.json", b"{bad", "labels.json' is damaged \\(not valid JSON: .*line 1 column 2"),
    ("labels.json", None, "labels.json' is missing"),
    ("backbone.json", b"[1, 2]", "backbone.json' is damaged \\(not the mapping"),
    ("run.json", b"\xff\xfe garbage", "run.json' is damaged \\(not valid JSON"),
])
def test_legacy_runs_without_manifest_still_get_named_errors(copy_of, name, content, expect):
    run = _legacy(copy_of())
    if content is None:
        (run / name).unlink()
    else:
        (run / name).write_bytes(content)
    with pytest.raises(DataError, match=expect):
        load_run(run)


def test_intact_legacy_run_loads(copy_of):
    run = _legacy(copy_of())
    assert load_run(run).label_map is not None


def test_cli_predict_and_evaluate_on_a_damaged_run_print_one_line(copy_of, tmp_path, digit_arrays, capsys):
    from PIL import Image

    run = copy_of()
    _flip_byte(run / "model.safetensors")
    img = tmp_path / "one.png"
    Image.fromarray((digit_arrays[0][0] * 16).astype(np.uint8)).save(img)
    assert cli("predict", run, img) == 2
    assert "model.safetensors" in one_line_error(capsys.readouterr().err)
    folder = tmp_path / "labelled" / "3"
    folder.mkdir(parents=True)
    shutil.copy(img, folder / "a.png")
    assert cli("evaluate", run, tmp_path / "labelled") == 2
    assert "model.safetensors" in one_line_error(capsys.readouterr().err)


def test_run_backbone_of_a_damaged_run_is_refused(copy_of):
    run = copy_of()
    (run / "backbone.json").write_text("{}")
    with pytest.raises(DataError, match="'backbone.json' differs"):
        create_backbone(f"run:{run}")


RUN_FILES = ["model.safetensors", "labels.json", "backbone.json", "config.yaml", "run.json", "metrics.json"]


@settings(max_examples=30, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(RUN_FILES), legacy=st.booleans(),
       cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=4),
       tail=st.binary(max_size=16))
def test_fuzz_damaged_runs_load_or_fail_cleanly(sealed_run, tmp_path_factory, name, legacy, cut, flips, tail):
    """Any truncation / byte flips / appended bytes of any run file: the run loads (only when the damage left the
    bytes as they were) or load_run raises a DataError; never another exception."""
    run = tmp_path_factory.mktemp("fuzz") / "r"
    shutil.copytree(sealed_run, run)
    if legacy:
        _legacy(run)
    p = run / name
    original = p.read_bytes()
    data = bytearray(original[: int(len(original) * cut)])
    for where, xor in flips:
        if data:
            data[min(int(where * len(data)), len(data) - 1)] ^= xor
    p.write_bytes(bytes(data) + tail)
    try:
        load_run(run)
    except DataError as e:
        assert "\n" not in str(e) and (name in str(e) or "run.json" in str(e)), str(e)
    else:
        assert legacy or name == "run.json" or p.read_bytes() == original, "a changed file passed the manifest check"
