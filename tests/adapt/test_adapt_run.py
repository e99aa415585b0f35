"""End to end: the adapt CLI and API on tiny real data (MNIST <-> digits images, SpamAssassin texts)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from transferkit.adapt import METHODS, AdaptConfig, adapt
from transferkit.cli.main import main
from transferkit.data import Dataset, from_arrays
from transferkit.errors import ConfigError

from tests.conftest import save_image_folder, stratified_pick
from tests.helpers import one_line_error


@pytest.fixture(scope="module")
def tiny_domains(mnist, digits):
    """100 MNIST (source), 50 digits unlabelled target, 50 digits target test."""
    xm, ym = mnist
    src = stratified_pick(ym, 10, seed=3)
    xd, yd = digits
    tgt = stratified_pick(yd, 10, seed=4)
    unl, test = tgt[::2], tgt[1::2]
    return (from_arrays(xm[src], ym[src]), from_arrays(xd[unl], yd[unl], value_max=16),
            from_arrays(xd[test], yd[test], value_max=16))


def _cfg(method: str, tmp_path, **kw) -> AdaptConfig:
    base = dict(method=method, backbone="scratch:cnn", image_size=16, epochs=1, batch_size=16, checkpoints=2,
                plot_points=40, num_threads=1, runs_dir=str(tmp_path), name=method.replace("+", "_"))
    return AdaptConfig.from_dict({**base, **kw})


@pytest.fixture(scope="module")
def image_baseline(tiny_domains, tmp_path_factory):
    r = adapt(_cfg("source-only", tmp_path_factory.mktemp("b"), plot_points=0), *tiny_domains, progress=False,
              save=False)
    return r.baseline


@pytest.mark.parametrize("method", [m for m in METHODS.names() if m != "source-only"] + ["dann+mcc", "coral+adabn"])
def test_every_method_runs_on_images_via_api(method, tiny_domains, image_baseline, tmp_path):
    r = adapt(_cfg(method, tmp_path, plot_points=0), *tiny_domains, progress=False, save=False,
              baseline=image_baseline)
    m = r.metrics
    assert 0 <= m["adapted"]["accuracy"] <= 1 and 0 <= m["source_only"]["accuracy"] <= 1
    assert 0 <= m["a_distance"]["before"] <= 2 and 0 <= m["a_distance"]["after"] <= 2
    assert len(r.candidates) == 2 and all(np.isfinite(c["scores"]["dev_risk"]) for c in r.candidates)
    assert r.baseline is image_baseline  # source-only reused, not retrained


def test_adabn_alone_reuses_source_only_weights_and_changes_only_bn_stats(tiny_domains, image_baseline, tmp_path):
    r = adapt(_cfg("adabn", tmp_path, plot_points=0), *tiny_domains, progress=False, save=False,
              baseline=image_baseline)
    state = r.model.state_dict()
    chosen = [c for c in r.candidates if c["step"] == r.metrics["selection"]["chosen"]["step"]][0]
    base = [c for c in image_baseline.candidates if c["step"] == chosen["step"]][0]["state"]
    for k, v in state.items():
        if "running_" in k or "num_batches_tracked" in k:
            continue
        assert np.allclose(v.numpy(), base[k].numpy()), k
    assert any(not np.allclose(state[k].numpy(), base[k].numpy()) for k in state if "running_mean" in k)


def test_baseline_from_other_settings_is_refused(tiny_domains, image_baseline, tmp_path):
    with pytest.raises(ConfigError, match="different data or training settings"):
        adapt(_cfg("dann", tmp_path, lr=5e-4), *tiny_domains, progress=False, save=False, baseline=image_baseline)


def test_cli_adapt_images_writes_report_plots_and_a_loadable_run(capsys, tmp_path, mnist, digits):
    xm, ym = mnist
    xd, yd = digits
    src = stratified_pick(ym, 12, seed=5)
    tgt = stratified_pick(yd, 12, seed=6)
    save_image_folder(tmp_path / "mnist", xm[src], ym[src])
    save_image_folder(tmp_path / "digits_unl", (xd[tgt[::2]] * 16).clip(0, 255), yd[tgt[::2]])
    save_image_folder(tmp_path / "digits_test", (xd[tgt[1::2]] * 16).clip(0, 255), yd[tgt[1::2]])
    rc = main(["--quiet", "adapt", "--source", str(tmp_path / "mnist"), "--target", str(tmp_path / "digits_unl"),
               "--target-test", str(tmp_path / "digits_test"), "--method", "dann+mcc", "--backbone", "scratch:cnn",
               "--image-size", "16", "--epochs", "1", "--batch-size", "16", "--checkpoints", "2",
               "--plot-points", "30", "--trade-offs", "0.5,1", "--num-threads", "1",
               "--runs-dir", str(tmp_path / "runs"), "--name", "da"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "target accuracy: source-only" in out and "proxy A-distance" in out
    run = tmp_path / "runs" / "da"
    for f in ("report.md", "embedding.png", "selection.png", "metrics.json", "candidates.json", "adapt.yaml",
              "config.yaml", "model.safetensors", "run.json", "history.json"):
        assert (run / f).exists(), f
    report = (run / "report.md").read_text()
    assert "| source-only |" in report and "| dann+mcc |" in report and "Selection without target labels" in report
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"adapted", "source_only", "oracle", "a_distance", "selection"} <= set(metrics)
    cands = json.loads((run / "candidates.json").read_text())["method"]
    assert sorted({c["trade_off"] for c in cands}) == [0.5, 1.0] and len(cands) == 4
    # the adapted model is a normal run: evaluate it on the target test folder
    rc = main(["--quiet", "evaluate", str(run), str(tmp_path / "digits_test"), "--out", str(tmp_path / "ev")])
    assert rc == 0
    acc = float(capsys.readouterr().out.split("accuracy=")[1].split()[0])
    assert acc == pytest.approx(metrics["adapted"]["accuracy"], abs=6e-5)  # printed with 4 decimals
    # reproduce from adapt.yaml
    rc = main(["--quiet", "adapt", "--config", str(run / "adapt.yaml"), "--name", "da2", "--trade-offs", "1",
               "--plot-points", "0"])
    assert rc == 0
    assert (tmp_path / "runs" / "da2" / "report.md").exists()
    # parameter transfer: start a new adaptation from the adapted run's backbone
    rc = main(["--quiet", "adapt", "--source", str(tmp_path / "mnist"), "--target", str(tmp_path / "digits_unl"),
               "--method", "coral", "--run", str(run), "--epochs", "1", "--checkpoints", "1", "--plot-points", "0",
               "--num-threads", "1", "--runs-dir", str(tmp_path / "runs"), "--name", "from-run"])
    assert rc == 0
    info = json.loads((tmp_path / "runs" / "from-run" / "run.json").read_text())
    assert info["lineage"][0]["run"] == str(run)
    assert "No labelled target test data" in (tmp_path / "runs" / "from-run" / "report.md").read_text()


def _spam_sets(spam_records):
    def ds(rs):
        return Dataset("text", [f"{r['subject']}\n{r['body']}" for r in rs],
                       np.asarray([r["label"] for r in rs], dtype=object))
    return ds(spam_records[:80]), ds(spam_records[80:120]), ds(spam_records[120:])


def test_text_end_to_end_with_scratch_transformer(spam_records, tmp_path):
    src, tgt, tst = _spam_sets(spam_records)
    cfg = AdaptConfig.from_dict(dict(method="cdan+mcc", backbone="scratch:transformer", max_length=32, epochs=1, batch_size=16,
                      checkpoints=1, plot_points=20, num_threads=1, runs_dir=str(tmp_path), name="txt"))
    r = adapt(cfg, src, tgt, tst, progress=False)
    assert (r.run_dir / "embedding.png").exists() and (r.run_dir / "model.safetensors").exists()
    assert set(r.labels["classes"]) == {"ham", "spam"}


@pytest.mark.parametrize("method", ["self-training", "dann+mcc", "cdan", "mmd+coral"])
def test_text_frozen_minilm_features(spam_records, tmp_path, method):
    src, tgt, tst = _spam_sets(spam_records)
    cfg = AdaptConfig.from_dict(dict(method=method, backbone="packaged:minilm-l6", max_length=32, features="frozen", epochs=2,
                      batch_size=16, checkpoints=2, plot_points=0, num_threads=1, threshold=0.6,
                      runs_dir=str(tmp_path), name="frozen"))
    r = adapt(cfg, src, tgt, tst, progress=False)
    assert r.model.backbone.meta.spec.startswith("frozen:packaged:minilm-l6")
    assert (r.run_dir / "adapter.safetensors").exists()
    assert json.loads((r.run_dir / "run.json").read_text())["loadable"] is False
    assert r.metrics["adapted"]["accuracy"] > 0.5


def test_cli_adabn_on_text_backbone_says_why(capsys, spam_jsonl, tmp_path):
    rc = main(["--quiet", "adapt", "--source", str(spam_jsonl), "--target", str(spam_jsonl), "--method", "adabn",
               "--backbone", "packaged:minilm-l6", "--text-column", "subject,body", "--max-length", "16",
               "--runs-dir", str(tmp_path)])
    err = one_line_error(capsys.readouterr().err)
    assert rc == 2
    assert "BatchNorm" in err and "LayerNorm" in err and "minilm" in err
    rc = main(["--quiet", "adapt", "--source", str(spam_jsonl), "--target", str(spam_jsonl), "--method", "adabn",
               "--backbone", "packaged:minilm-l6", "--features", "frozen", "--runs-dir", str(tmp_path)])
    assert rc == 2 and "frozen" in capsys.readouterr().err
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial run left behind


@pytest.mark.parametrize("argv, match", [
    (["--method", "dan"], "Did you mean 'dann'"),
    (["--method", "dann", "--run", "x"], "exactly one of --backbone"),
    (["--method", "dann", "--select", "orakel"], "Unknown selection criterion"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, match):
    rc = main(["adapt", "--source", "s", "--target", "t", "--backbone", "scratch:cnn", *argv,
               "--runs-dir", str(tmp_path)])
    err = one_line_error(capsys.readouterr().err)
    assert rc == 2 and match in err


def test_cli_missing_source_path_is_data_error(capsys, tmp_path):
    rc = main(["adapt", "--source", str(tmp_path / "nope"), "--target", str(tmp_path / "nope2"),
               "--backbone", "scratch:cnn", "--runs-dir", str(tmp_path)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
