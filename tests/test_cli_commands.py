"""The `transferkit` command, run in-process: fit / evaluate / predict / features / compare / info, and the
one-line errors (exit code 2, no traceback) for bad input."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import assert_png, cli, one_line_error


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_runs")


@pytest.fixture(scope="module")
def image_run(runs_dir, mnist_folder) -> Path:
    """linear probe of packaged EfficientNet-Lite0 on a folder of MNIST 0/1/2 PNGs, through the CLI."""
    rc = cli("--quiet", "fit", "--train", mnist_folder, "--backbone", "packaged:efficientnet_lite0",
             "--strategy", "linear-probe", "--image-size", 32, "--probe-grid", "0.01,0.1,1",
             "--runs-dir", runs_dir, "--name", "digits-lp")
    assert rc == 0
    return runs_dir / "digits-lp"


@pytest.fixture(scope="module")
def text_run(runs_dir, spam_jsonl) -> Path:
    """linear probe of packaged MiniLM on SpamAssassin subject + body, through the CLI."""
    rc = cli("--quiet", "fit", "--train", spam_jsonl, "--text-column", "subject,body", "--label-column", "label",
             "--id-column", "id", "--backbone", "packaged:minilm-l6", "--max-length", 32,
             "--strategy", "linear-probe", "--runs-dir", runs_dir, "--name", "spam-lp")
    assert rc == 0
    return runs_dir / "spam-lp"


# ------------------------------------------------------------------------------------------------------
# fit
# ------------------------------------------------------------------------------------------------------
def test_fit_image_folder_with_flags(capsys, tmp_path, mnist_folder):
    rc = cli("--quiet", "fit", "--train", mnist_folder, "--backbone", "packaged:efficientnet_lite0",
             "--strategy", "linear-probe", "--image-size", 32, "--probe-grid", "0.1,1", "--seed", 3,
             "--runs-dir", tmp_path, "--name", "flags")
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("linear-probe on packaged:efficientnet_lite0: test macro_f1 = ")
    f1 = float(lines[0].rsplit("=", 1)[1])
    assert lines[1].startswith(f"run: {tmp_path / 'flags'}")
    run = tmp_path / "flags"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"] == str(mnist_folder) and cfg["image_size"] == 32 and cfg["seed"] == 3
    assert cfg["probe_grid"] == [0.1, 1.0] and cfg["strategy"] == "linear-probe"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["macro_f1"] == pytest.approx(f1, abs=1e-4)
    assert f1 > 0.6  # MNIST 0 / 1 / 2 with ImageNet features: chance is 0.33
    assert json.loads((run / "labels.json").read_text())["classes"] == ["0", "1", "2"]


def test_fit_text_jsonl_with_joined_columns(text_run, spam_records):
    cfg = yaml.safe_load((text_run / "config.yaml").read_text())
    assert cfg["text_column"] == "subject,body" and cfg["max_length"] == 32
    meta = json.loads((text_run / "backbone.json").read_text())
    assert meta["spec"] == "packaged:minilm-l6" and meta["modality"] == "text" and meta["max_length"] == 32
    metrics = json.loads((text_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.7, metrics["test"]  # balanced ham / spam: chance is 0.5
    assert metrics["details"]["sizes"]["train"] + metrics["details"]["sizes"]["val"] + \
        metrics["details"]["sizes"]["test"] == len(spam_records)
    assert (text_run / "backbone_files" / "config.json").exists()


def test_fit_config_yaml_round_trip(capsys, image_run):
    rc = cli("--quiet", "fit", "--config", image_run / "config.yaml", "--name", "other", "--seed", 1)
    _, err = capsys.readouterr()
    assert rc == 0, err
    other = image_run.parent / "other"
    a = yaml.safe_load((image_run / "config.yaml").read_text())
    b = yaml.safe_load((other / "config.yaml").read_text())
    assert b["name"] == "other" and b["seed"] == 1
    assert {k: v for k, v in a.items() if k not in ("name", "seed")} == \
        {k: v for k, v in b.items() if k not in ("name", "seed")}
    # a different seed: a different split of the same folder
    assert (json.loads((other / "metrics.json").read_text())["details"]["split_note"]
            != json.loads((image_run / "metrics.json").read_text())["details"]["split_note"])


# ------------------------------------------------------------------------------------------------------
# evaluate / predict
# ------------------------------------------------------------------------------------------------------
def test_evaluate_run_on_labelled_folder(capsys, image_run, mnist_folder):
    rc = cli("evaluate", image_run, mnist_folder)
    out, err = capsys.readouterr()
    assert rc == 0, err
    first = dict(kv.split("=") for kv in out.splitlines()[0].split())
    assert set(first) == {"accuracy", "macro_f1", "weighted_f1", "ece"}
    ev = image_run / "eval-digits"
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["n"] == 60 and metrics["accuracy"] == pytest.approx(float(first["accuracy"]), abs=1e-4)
    assert sum(map(sum, metrics["confusion_matrix"])) == 60
    assert metrics["accuracy"] > 0.6
    assert_png(ev / "confusion_matrix.png")
    assert "confusion_matrix.png" in (ev / "report.md").read_text()
    assert f"report: {ev / 'report.md'}" in out


def test_evaluate_text_run_with_explicit_out(capsys, text_run, spam_jsonl, tmp_path):
    rc = cli("evaluate", text_run, spam_jsonl, "--out", tmp_path / "ev")
    _, err = capsys.readouterr()
    assert rc == 0, err
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n"] == 160 and m["accuracy"] > 0.7


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_predict_images_to_csv_and_json_with_top_k(capsys, image_run, mnist_folder, tmp_path):
    images = sorted(mnist_folder.rglob("*.png"))
    rc = cli("predict", image_run, mnist_folder, "-o", tmp_path / "p.csv", "--top-k", 2)
    assert rc == 0, capsys.readouterr().err
    rows = _read_csv(tmp_path / "p.csv")
    assert list(rows[0]) == ["id", "label", "probability", "top1_label", "top1_probability", "top2_label",
                             "top2_probability"]
    assert len(rows) == len(images)
    assert {r["id"] for r in rows} == {str(p) for p in images}
    for r in rows:
        assert r["label"] == r["top1_label"] and r["label"] in {"0", "1", "2"} and r["top2_label"] != r["label"]
        p1, p2 = float(r["top1_probability"]), float(r["top2_probability"])
        assert 1.0 >= p1 >= p2 >= 0.0 and p1 + p2 <= 1.0 + 1e-6
    # the folder holds the class in the path: predictions mostly agree
    acc = np.mean([Path(r["id"]).parent.name == r["label"] for r in rows])
    assert acc > 0.7

    rc = cli("predict", image_run, *images[:3], "-o", tmp_path / "p.json", "--top-k", 5)
    assert rc == 0
    rows_json = json.loads((tmp_path / "p.json").read_text())
    assert [r["id"] for r in rows_json] == [str(p) for p in images[:3]]
    assert "top3_label" in rows_json[0] and "top4_label" not in rows_json[0]  # k capped at 3 classes
    by_id = {r["id"]: r for r in rows}
    for r in rows_json:
        assert r["label"] == by_id[r["id"]]["label"]
        # same image, different batch: equal up to float noise of batched convolutions
        assert r["probability"] == pytest.approx(float(by_id[r["id"]]["probability"]), abs=1e-4)


def test_predict_to_stdout(capsys, image_run, mnist_folder):
    one = sorted(mnist_folder.rglob("*.png"))[0]
    rc = cli("predict", image_run, one, "--top-k", 1)
    out, _ = capsys.readouterr()
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0] == "id,label,probability,top1_label,top1_probability" and len(lines) == 2


def test_predict_text_file_and_table(capsys, text_run, spam_records, tmp_path):
    txt = tmp_path / "mail.txt"
    txt.write_text("WIN a FREE prize now!!! click here\n\nmeeting notes for tomorrow's review\n", encoding="utf-8")
    rc = cli("predict", text_run, txt, "-o", tmp_path / "t.json")
    assert rc == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "t.json").read_text())
    assert len(rows) == 2 and all(r["label"] in ("ham", "spam") for r in rows)

    table = tmp_path / "unlabelled.csv"
    pd.DataFrame([{k: r[k] for k in ("id", "subject", "body")} for r in spam_records[:12]]).to_csv(table, index=False)
    rc = cli("predict", text_run, table, "-o", tmp_path / "t.csv")
    assert rc == 0, capsys.readouterr().err
    rows = _read_csv(tmp_path / "t.csv")
    assert [r["id"] for r in rows] == [r["id"] for r in spam_records[:12]]


def test_predict_text_file_into_image_run_is_one_line_error(capsys, image_run, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello\nworld\n", encoding="utf-8")
    rc = cli("predict", image_run, txt, "-o", tmp_path / "x.csv")
    err = capsys.readouterr().err
    assert rc == 2
    line = one_line_error(err)
    assert "takes images" in line and "texts" in line
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------------------------------------
# one-line errors
# ------------------------------------------------------------------------------------------------------
def _bad_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("backbone: scratch:cnn\nepochz: 3\n", encoding="utf-8")
    return p


BAD_FIT = {
    "missing path": (lambda t, f, j: ["--train", t / "no_such_folder"], r"does not exist"),
    "missing column": (lambda t, f, j: ["--train", j, "--text-column", "subject,bodyy",
                                        "--backbone", "packaged:minilm-l6"], r"Column 'bodyy'.*Columns: id, group"),
    "unknown backbone source": (lambda t, f, j: ["--train", f, "--backbone", "tim:resnet18"],
                                r"Unknown backbone source 'tim'.*Did you mean 'timm'"),
    "unknown packaged backbone": (lambda t, f, j: ["--train", f, "--backbone", "packaged:efficientnet-lite0"],
                                  r"Unknown packaged backbone.*Did you mean 'efficientnet_lite0'"),
    "missing prefix": (lambda t, f, j: ["--train", f, "--backbone", "resnet18"], r"needs a source prefix"),
    "epochs 0": (lambda t, f, j: ["--train", f, "--epochs", 0], r"'epochs' parameter.*integer >= 1.*Got 0"),
    "bad strategy": (lambda t, f, j: ["--train", f, "--strategy", "lp_ft"], r"Unknown strategy 'lp_ft'.*'lp-ft'"),
    "unknown yaml key": (lambda t, f, j: ["--config", _bad_yaml(t), "--train", f],
                         r"Unknown key 'epochz'.*Did you mean 'epochs'"),
    "missing config file": (lambda t, f, j: ["--config", t / "nope.yaml"], r"does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_FIT))
def test_bad_fit_input_is_one_line_exit_2(capsys, tmp_path, mnist_folder, spam_jsonl, case):
    make, pattern = BAD_FIT[case]
    runs = tmp_path / "runs"
    rc = cli("--quiet", "fit", *make(tmp_path, mnist_folder, spam_jsonl), "--runs-dir", runs, "--name", "bad")
    out, err = capsys.readouterr()
    assert rc == 2
    line = one_line_error(err)
    assert len(err.strip().splitlines()) == 1, err
    import re

    assert re.search(pattern, line), line
    assert not (runs / "bad").exists()
    assert not runs.exists() or not any(runs.iterdir()), "no partial run left behind"


def test_strict_corrupt_image_is_one_line_exit_2(capsys, tmp_path, mnist_folder):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(mnist_folder, data)
    (data / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rc = cli("--quiet", "fit", "--train", data, "--strict", "--runs-dir", tmp_path / "runs", "--name", "s")
    err = capsys.readouterr().err
    assert rc == 2 and "broken.png" in one_line_error(err)


@pytest.mark.parametrize("argv, pattern", [
    (lambda t, r, f: ["evaluate", t / "no-run", f], r"Run '.*no-run' does not exist"),
    (lambda t, r, f: ["evaluate", r, t / "nothing-here"], r"Data path '.*nothing-here' does not exist"),
    (lambda t, r, f: ["predict", r, t / "missing.png"], r"missing.png' does not exist"),
    (lambda t, r, f: ["predict", r, t], r"No images found"),
    (lambda t, r, f: ["predict", r, next(f.rglob("*.png")), "-o", t / "out.xlsx"], r"must end in .csv or .json"),
])
def test_bad_evaluate_predict_input_is_one_line_exit_2(capsys, tmp_path, image_run, mnist_folder, argv, pattern):
    import re

    rc = cli(*argv(tmp_path, image_run, mnist_folder))
    err = capsys.readouterr().err
    assert rc == 2
    assert re.search(pattern, one_line_error(err)), err


# ------------------------------------------------------------------------------------------------------
# features, compare, info
# ------------------------------------------------------------------------------------------------------
def test_features_export_parquet_and_npz(capsys, spam_jsonl, spam_records, tmp_path):
    rc = cli("--quiet", "features", "--backbone", "packaged:minilm-l6", "--data", spam_jsonl,
             "--text-column", "subject,body", "--id-column", "id", "--max-length", 32, "-o", tmp_path / "f.parquet")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "160 x 384" in out
    df = pd.read_parquet(tmp_path / "f.parquet")
    assert list(df.columns[:3]) == ["id", "label", "f0"] and df.shape == (160, 2 + 384)
    assert list(df["id"]) == [r["id"] for r in spam_records]
    assert list(df["label"]) == [r["label"] for r in spam_records]
    rc = cli("--quiet", "features", "--backbone", "packaged:minilm-l6", "--data", spam_jsonl,
             "--text-column", "subject,body", "--max-length", 32, "-o", tmp_path / "f.npz")
    assert rc == 0
    z = np.load(tmp_path / "f.npz")
    np.testing.assert_allclose(z["features"], df[[f"f{i}" for i in range(384)]].to_numpy(), atol=1e-6)
    rc = cli("features", "--backbone", "packaged:minilm-l6", "--data", spam_jsonl, "-o", tmp_path / "f.csv")
    assert rc == 2 and "must end in .npz or .parquet" in one_line_error(capsys.readouterr().err)


def test_features_from_a_saved_run(capsys, image_run, mnist_folder, tmp_path):
    from transferkit.features.extract import extract_features
    from transferkit.features.inputs import Inputs
    from transferkit.runs import load_run

    rc = cli("--quiet", "features", "--run", image_run, "--data", mnist_folder, "-o", tmp_path / "f.npz")
    assert rc == 0, capsys.readouterr().err
    z = np.load(tmp_path / "f.npz")
    assert z["features"].shape == (60, 1280)
    assert sorted(set(z["labels"].tolist())) == ["0", "1", "2"]
    from transferkit.data import load_path

    run = load_run(image_run)
    ref = extract_features(run.model.backbone, Inputs(load_path(mnist_folder), run.model.backbone), progress=False)
    np.testing.assert_allclose(z["features"], ref, atol=1e-4)


def test_compare_command(capsys, mnist_folder, tmp_path):
    out_dir = tmp_path / "cmp"
    rc = cli("--quiet", "compare", "--train", mnist_folder, "--strategies", "classical,linear-probe",
             "--budgets", "3,all", "--seeds", "0", "--image-size", 32, "--probe-grid", "0.1,1", "--out", out_dir)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "| **transfer gain** |" in out and f"report: {out_dir}/report.md" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["verdict"] in out
    assert set(summary["gains"]) == {"3", "all"}
    assert len(list((out_dir / "cells").glob("*.json"))) == 4
    rc = cli("--quiet", "compare", "--train", mnist_folder, "--seeds", "zero", "--out", tmp_path / "x")
    assert rc == 2 and "--seeds expects integers" in one_line_error(capsys.readouterr().err)


def test_info_lists_sources_packaged_backbones_and_strategies(capsys):
    assert cli("info") == 0
    out = capsys.readouterr().out
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "minilm-l6"):
        assert f"packaged:{name}" in out
        line = next(ln for ln in out.splitlines() if f"packaged:{name}" in ln)
        assert line.rstrip().endswith("installed") and "not installed" not in line
    for source in ("timm:", "torchvision:", "hf:", "packaged:", "scratch:", "run:"):
        assert f"  {source}" in out
    for strategy in ("linear-probe", "fine-tune", "lp-ft", "hybrid", "auto"):
        assert any(ln.strip().startswith(strategy) for ln in out.splitlines())
    for method in ("source-only", "adabn", "coral", "mmd", "dann", "cdan", "mcc", "self-training"):
        assert any(ln.strip().startswith(method) for ln in out.splitlines()), method
    assert "logme, leep, nce, hscore, knn" in out


def test_top_level_api_exports():
    import transferkit

    for name in transferkit.__all__:
        assert getattr(transferkit, name) is not None, name
    from transferkit.adapt import adapt

    assert callable(adapt) and callable(transferkit.rank_backbones) and callable(transferkit.compare)


def test_console_script_info():
    exe = Path(sys.executable).parent / "transferkit"
    if not exe.exists():
        pytest.skip("console script not installed next to this interpreter")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([str(exe), "info"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    assert "packaged:efficientnet_lite0" in p.stdout and "lp-ft" in p.stdout


def test_no_command_is_usage_error(capsys):
    assert cli() == 2
    assert "usage:" in capsys.readouterr().err
