"""Feature extraction past one process: ``--shard I/N`` + ``--merge`` and ``--cluster ray`` (Ray Data actors) write
the same features, ids and labels as the single-process ``transferkit features``, resume shard by shard, and refuse
to mix shards of two extractions. Ray runs locally (``ray.init(num_cpus=2)``) with 2 actors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers import cli, one_line_error

BASE = ["--quiet", "features", "--backbone", "scratch:cnn", "--image-size", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, digits) -> Path:
    """The first 100 digits as PNGs, one folder per class."""
    images, target = digits
    root = tmp_path_factory.mktemp("digits100")
    for i in range(100):
        d = root / str(target[i])
        d.mkdir(exist_ok=True)
        Image.fromarray((images[i] * 15.9).astype(np.uint8)).save(d / f"img{i:04d}.png")
    return root


def _single(tmp: Path, data: Path, engine: str) -> pd.DataFrame:
    assert cli(*BASE, "--data", data, "--engine", engine, "-o", tmp / f"single-{engine}.parquet") == 0
    return pd.read_parquet(tmp / f"single-{engine}.parquet")


def _same(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(got.columns) == list(ref.columns) and list(ref.columns[:3]) == ["id", "label", "f0"]
    assert got["id"].tolist() == ref["id"].tolist() and got["label"].tolist() == ref["label"].tolist()
    np.testing.assert_allclose(got.iloc[:, 2:].to_numpy(), ref.iloc[:, 2:].to_numpy(), rtol=1e-5, atol=1e-5)


def test_shards_merge_into_the_single_process_file_and_resume(tmp_path, digit_folder, capsys):
    ref = _single(tmp_path, digit_folder, "eager")
    out = tmp_path / "out"
    shard = [*BASE, "--data", digit_folder, "-o", out]
    assert cli(*shard, "--shard", "0/2") == 0
    assert cli("features", "-o", out, "--merge") == 2  # shard 1/2 is missing: refused, one line
    assert "Shards 1/2 are missing" in one_line_error(capsys.readouterr().err)
    assert cli(*shard, "--shard", "1/2") == 0
    first = (out / "shards" / "part-00000-of-00002.parquet").stat().st_mtime_ns
    capsys.readouterr()
    assert cli(*shard, "--shard", "0/2") == 0  # complete already: skipped, not rewritten
    assert "already complete" in capsys.readouterr().out
    assert (out / "shards" / "part-00000-of-00002.parquet").stat().st_mtime_ns == first
    assert cli(*shard, "--shard", "1/2", "--seed", "1") == 2  # other weights: never mixed in
    assert "another extraction (weights differ)" in one_line_error(capsys.readouterr().err)

    assert cli("features", "-o", out, "--merge") == 0
    assert "merged 2 shards: 100 rows" in capsys.readouterr().out
    _same(pd.read_parquet(out / "features.parquet"), ref)
    _same(pd.read_parquet(out / "shards"), ref)  # the shard folder reads as one table too, in row order
    assert cli(*shard, "--shard", "2/2") == 2 and "--shard must be I/N" in capsys.readouterr().err
    assert cli(*shard, "--shard", "0/2", "-o", tmp_path / "x.parquet") == 2
    assert "give -o DIR/" in capsys.readouterr().err


def test_without_ray_the_cluster_mode_says_how_to_install_it(tmp_path, digit_folder, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    assert cli(*BASE, "--data", digit_folder, "-o", tmp_path / "out", "--cluster", "ray") == 2
    assert "pip install 'transferkit[ray]'" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_actor_pool_matches_the_single_process_features_and_resumes(tmp_path, digit_folder, local_ray, capsys):
    ref = _single(tmp_path, digit_folder, "onnx")  # also exports the ONNX graph once, for the actors' cache hits
    out = tmp_path / "ray"
    args = [*BASE, "--data", digit_folder, "-o", out, "--cluster", "ray", "--actors", "2", "--shard-rows", "25",
            "--engine", "onnx"]
    capsys.readouterr()
    assert cli(*args) == 0
    assert "4 shards: 4 computed, 0 already complete" in capsys.readouterr().out
    _same(pd.read_parquet(out / "features.parquet"), ref)
    parts = sorted((out / "shards").glob("part-*-of-00004.parquet"))
    assert len(parts) == 4
    import pyarrow.parquet as pq

    meta = pq.read_schema(parts[0]).metadata[b"transferkit"].decode()
    assert '"engine": "onnx"' in meta and '"rows": 100' in meta

    parts[2].unlink()  # an interrupted extraction: one shard never written
    kept = {p: p.stat().st_mtime_ns for p in parts if p.exists()}
    (out / "features.parquet").unlink()
    assert cli(*args) == 0
    assert "4 shards: 1 computed, 3 already complete" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards were not computed again
    _same(pd.read_parquet(out / "features.parquet"), ref)
