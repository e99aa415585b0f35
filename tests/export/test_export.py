"""``transferkit export``: each format loaded by its plain runtime (onnxruntime, transformers) in the test and
compared with ``predict_dataset``; the model card's own loading code run as written; refusals; atomic folders."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import save_image_folder
from transferkit.cli.main import main
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.errors import ConfigError
from transferkit.export import FORMATS, export_run
from transferkit.export.api import PARITY_FAILED_EXIT
from transferkit.export.onnx_format import OnnxFormat
from transferkit.pipeline import fit
from transferkit.runs import load_run
from transferkit.runs.predict import inputs_to_dataset, predict_dataset

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


# -- helpers -------------------------------------------------------------------------------------------------------
def probabilities(run, ds) -> np.ndarray:
    """Every class's probability per row, from ``predict_dataset`` (top-k = all classes)."""
    classes = run.label_map.classes
    rows = predict_dataset(run, ds, top_k=len(classes))
    out = np.zeros((len(rows), len(classes)))
    for i, row in enumerate(rows):
        for r in range(1, len(classes) + 1):
            out[i, classes.index(row[f"top{r}_label"])] = row[f"top{r}_probability"]
    return out


def card_code(folder: Path) -> str:
    """The python block of the export's README.md, pointed at ``folder``."""
    text = (folder / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    return code.replace('EXPORT_DIR = "path/to/this/folder"', f"EXPORT_DIR = {str(folder)!r}")


def run_card(folder: Path, **inputs) -> dict:
    """Execute the card's loading code with ``texts`` / ``paths`` given; its namespace afterwards."""
    ns = dict(inputs)
    exec(compile(card_code(folder), str(folder / "README.md"), "exec"), ns)  # noqa: S102 - the card's own code
    return ns


def texts_of(records) -> list[str]:
    return [f"{r['subject']}\n{r['body']}" for r in records]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# -- runs (built once for the module) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_dir

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(d)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(d)
    return d


def _fit(runs_dir: Path, name: str, train, **kw) -> Path:
    cfg = FitConfig.from_dict(dict(probe_grid=[0.1, 1.0], runs_dir=str(runs_dir), name=name, **kw))
    return fit(cfg, train=train, progress=False).run_dir


@pytest.fixture(scope="module")
def cnn_run(runs_dir, digits150) -> Path:
    X, y = digits150
    return _fit(runs_dir, "cnn", from_arrays(X, y), backbone="scratch:cnn", strategy="linear-probe", image_size=16)


@pytest.fixture(scope="module")
def pixels_run(runs_dir, digits150) -> Path:
    X, y = digits150
    return _fit(runs_dir, "pixels", from_arrays(X, y), backbone="classical:pixels", strategy="classical")


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, digits) -> Path:
    """40 digits that the runs did not train on, as PNG files (the card's code reads files)."""
    X, y = digits
    imgs = (X[1000:1040] * (255.0 / 16.0)).round().astype(np.uint8)
    return save_image_folder(tmp_path_factory.mktemp("digit_files") / "digits", imgs, y[1000:1040])


@pytest.fixture(scope="module")
def spam_train(spam_records):
    return from_arrays(texts_of(spam_records[:100]), [r["label"] for r in spam_records[:100]])


@pytest.fixture(scope="module")
def held_out(spam_records) -> list[str]:
    """Real texts the runs did not train on, one longer than any max_length (truncation) and one word."""
    return texts_of(spam_records[100:130]) + ["free " * 300, "hello"]


@pytest.fixture(scope="module")
def cls_pooled(tiny_bert):
    """A tiny BERT; the runs below fit it with ``pooling="cls"``, which the hf export can express."""
    return f"hf:{tiny_bert}"


@pytest.fixture(scope="module")
def bert_cls_run(runs_dir, cls_pooled, spam_train) -> Path:
    return _fit(runs_dir, "bert-cls", spam_train, backbone=cls_pooled, strategy="linear-probe", max_length=24,
                pooling="cls")


@pytest.fixture(scope="module")
def bert_regression_run(runs_dir, cls_pooled, spam_records) -> Path:
    texts = texts_of(spam_records[:100])
    target = [float(len(t) % 97) for t in texts]  # a number per text (its length mod 97)
    return _fit(runs_dir, "bert-reg", from_arrays(texts, target), backbone=cls_pooled, strategy="linear-probe",
                task="regression", max_length=24, pooling="cls")


@pytest.fixture(scope="module")
def hybrid_run(runs_dir, tiny_bert, spam_train) -> Path:
    return _fit(runs_dir, "hybrid", spam_train, backbone=f"hf:{tiny_bert}", strategy="hybrid", max_length=24)


@pytest.fixture(scope="module")
def tfidf_run(runs_dir, spam_jsonl) -> Path:
    """The classical baseline, fitted from a file (so the card has a data path to name)."""
    cfg = FitConfig.from_dict({"backbone": "classical:tfidf", "strategy": "classical", "train": str(spam_jsonl),
                               "text_column": "subject,body", "runs_dir": str(runs_dir), "name": "tfidf"})
    return fit(cfg, progress=False).run_dir


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """export_run, once per (run, format), into a fresh folder."""
    root = tmp_path_factory.mktemp("exports")
    done: dict = {}

    def get(run: Path, fmt: str):
        key = (str(run), fmt)
        if key not in done:
            done[key] = export_run(run, fmt, root / f"{run.name}-{fmt}")
        return done[key]

    return get


# -- onnx: one graph from raw input to probabilities ---------------------------------------------------------------
@pytest.mark.parametrize("which", ["cnn_run", "pixels_run"])
def test_image_onnx_card_code_matches_predict(request, which, exports, digit_files):
    run_dir = request.getfixturevalue(which)
    res = exports(run_dir, "onnx")
    assert res.ok and res.path.is_dir() and {"model.onnx", "README.md", "parity.json", "labels.json"} <= set(res.files)
    run = load_run(run_dir)
    paths = sorted(str(p) for p in digit_files.rglob("*.png"))
    ns = run_card(res.path, paths=paths)
    want = probabilities(run, inputs_to_dataset(run, [str(digit_files)]))
    assert ns["probabilities"].shape == want.shape == (40, 10)
    assert np.abs(ns["probabilities"] - want).max() < 1e-4
    one = ns["session"].run(None, {"images": ns["feeds"]["images"][:1]})[0]  # dynamic batch: one row
    assert np.abs(one - want[:1]).max() < 1e-4
    size = run.model.backbone.meta.input_size
    assert ns["feeds"]["images"].dtype == np.uint8 and ns["feeds"]["images"].shape[1:] == (3, size, size)


@pytest.mark.parametrize("which", ["bert_cls_run", "hybrid_run", "tfidf_run"])
def test_text_onnx_card_code_matches_predict(request, which, exports, held_out):
    run_dir = request.getfixturevalue(which)
    res = exports(run_dir, "onnx")
    assert res.ok, res.parity.summary()
    run = load_run(run_dir)
    ns = run_card(res.path, texts=held_out)
    want = probabilities(run, from_arrays(held_out))
    assert np.abs(ns["probabilities"] - want).max() < 1e-4
    assert (ns["probabilities"].argmax(1) == want.argmax(1)).all()
    names = {i.name for i in ns["session"].get_inputs()}
    if which == "hybrid_run":  # the TF-IDF branch is the second input pair
        assert names == {"input_ids", "attention_mask", "term_ids", "term_mask"}
        assert "term_vocabulary.json" in res.files and "tokenizer.json" in res.files
    elif which == "tfidf_run":
        assert names == {"term_ids", "term_mask"}
    else:
        assert names == {"input_ids", "attention_mask"}
        assert ns["feeds"]["input_ids"].shape[1] == run.model.backbone.meta.max_length  # the long text, truncated


def test_onnx_metadata_and_parity_file(exports, hybrid_run):
    import onnxruntime as ort

    res = exports(hybrid_run, "onnx")
    meta = ort.InferenceSession(str(res.path / "model.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["transferkit.labels"])["classes"] == ["ham", "spam"]
    assert meta["transferkit.task"] == "classification" and meta["transferkit.output"] == "probabilities"
    parity = json.loads((res.path / "parity.json").read_text())
    assert parity["ok"] and parity["inputs"] == "synthetic" and parity["rows"] == 64
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0
    assert parity["max_abs_diff"] == res.parity.max_abs_diff


@pytest.mark.parametrize("which", ["cnn_run", "hybrid_run"])
def test_int8_is_quantised_and_agrees_on_labels(request, which, exports, digit_files, held_out):
    import onnx

    run_dir = request.getfixturevalue(which)
    res = exports(run_dir, "onnx-int8")
    assert res.ok and res.parity.rule.min_top1 == 0.9 and res.parity.top1_agreement >= 0.9
    ops = {n.op_type for n in onnx.load(str(res.path / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}, ops
    run = load_run(run_dir)
    if which == "cnn_run":
        ns = run_card(res.path, paths=sorted(str(p) for p in digit_files.rglob("*.png")))
        want = probabilities(run, inputs_to_dataset(run, [str(digit_files)]))
    else:
        ns = run_card(res.path, texts=held_out)
        want = probabilities(run, from_arrays(held_out))
    assert (ns["probabilities"].argmax(1) == want.argmax(1)).mean() >= 0.9
    assert np.abs(ns["probabilities"] - want).max() < 0.2


def test_regression_onnx_gives_predictions_in_target_units(exports, bert_regression_run, held_out):
    res = exports(bert_regression_run, "onnx")
    assert res.ok, res.parity.summary()
    run = load_run(bert_regression_run)
    ns = run_card(res.path, texts=held_out)
    want = np.array([r["prediction"] for r in predict_dataset(run, from_arrays(held_out))])
    assert ns["prediction"].shape == want.shape
    assert np.abs(ns["prediction"] - want).max() <= 1e-3 * float(run.model.target_std)
    assert res.parity.scale == pytest.approx(float(run.model.target_std))


# -- hf: a transformers folder ------------------------------------------------------------------------------------
def test_hf_classifier_loads_with_labels_and_gives_the_run_probabilities(exports, bert_cls_run, held_out):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    res = exports(bert_cls_run, "hf")
    assert res.ok and res.parity.max_abs_diff < 1e-4
    run = load_run(bert_cls_run)
    want = probabilities(run, from_arrays(held_out))
    model = AutoModelForSequenceClassification.from_pretrained(str(res.path)).eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.id2label == {0: "ham", 1: "spam"} and model.config.label2id == {"ham": 0, "spam": 1}
    tok = AutoTokenizer.from_pretrained(str(res.path))
    assert tok.model_max_length == 24
    with torch.no_grad():
        got = model(**tok(held_out, truncation=True, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
    assert np.abs(got - want).max() < 1e-4
    card = run_card(res.path, texts=held_out)  # the card's own code: pipeline and model
    assert np.abs(card["probabilities"].detach().numpy() - want).max() < 1e-4
    clf = pipeline("text-classification", model=str(res.path), top_k=None)
    scored = clf(held_out, truncation=True)
    piped = np.array([[next(d["score"] for d in row if d["label"] == c) for c in ("ham", "spam")] for row in scored])
    assert np.abs(piped - want).max() < 1e-4


def test_hf_regression_pipeline_returns_the_prediction(exports, bert_regression_run, held_out):
    from transformers import pipeline

    res = exports(bert_regression_run, "hf")
    assert res.ok, res.parity.summary()
    run = load_run(bert_regression_run)
    want = np.array([r["prediction"] for r in predict_dataset(run, from_arrays(held_out))])
    scored = pipeline("text-classification", model=str(res.path))(held_out, truncation=True)
    got = np.array([row["score"] for row in scored])
    assert np.abs(got - want).max() <= 1e-3 * float(run.model.target_std)


@pytest.mark.parametrize("which, why", [
    ("cnn_run", "image run"),
    ("hybrid_run", "hybrid run"),
    ("tfidf_run", "not a Hugging Face text encoder"),
])
def test_hf_refuses_what_it_cannot_express(request, which, why, tmp_path):
    run_dir = request.getfixturevalue(which)
    with pytest.raises(ConfigError, match=why) as e:
        export_run(run_dir, "hf", tmp_path / "out")
    assert "\n" not in str(e.value) and "--format onnx" in str(e.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_real_minilm_exports_to_onnx_and_hf_refuses_its_mean_pooling(tmp_path, runs_dir, spam_train, held_out):
    import time

    t0 = time.perf_counter()
    run_dir = _fit(runs_dir, "minilm", spam_train.subset(np.arange(60)), backbone="packaged:minilm-l6",
                   strategy="linear-probe", max_length=32)
    res = export_run(run_dir, "onnx", tmp_path / "minilm-onnx")
    assert res.ok and res.parity.max_abs_diff < 1e-4, res.parity.summary()
    ns = run_card(res.path, texts=held_out)
    want = probabilities(load_run(run_dir), from_arrays(held_out))
    assert np.abs(ns["probabilities"] - want).max() < 1e-4
    with pytest.raises(ConfigError, match="mean-pools.*trust_remote_code.*--pooling cls.*--format onnx"):
        export_run(run_dir, "hf", tmp_path / "minilm-hf")
    assert time.perf_counter() - t0 < 60


def test_cli_run_fitted_with_cls_pooling_exports_to_a_transformers_classifier(tmp_path, spam_records, held_out):
    """`fit --pooling cls` is the CLI path to a run that `export --format hf` expresses exactly."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer


    rows = [{"text": t, "label": r["label"]} for t, r in zip(texts_of(spam_records[:60]), spam_records[:60])]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["--quiet", "fit", "--train", str(data), "--backbone", "packaged:minilm-l6", "--pooling", "cls",
                "--strategy", "linear-probe", "--max-length", "32", "--runs-dir", str(tmp_path / "runs"),
                "--name", "cls"]) == 0
    run = load_run(tmp_path / "runs" / "cls")
    assert run.config.pooling == "cls" and run.model.backbone.pooling == "cls"  # saved and rebuilt as fitted
    assert main(["--quiet", "export", str(tmp_path / "runs" / "cls"), "--format", "hf", "-o",
                str(tmp_path / "hf")]) == 0
    want = probabilities(run, from_arrays(held_out))
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "hf")).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    with torch.no_grad():
        got = model(**tok(held_out, truncation=True, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_pooling_is_checked_against_the_backbone(tmp_path, digits150):
    X, y = digits150
    with pytest.raises(ConfigError, match="'pooling'.*'mean' or 'cls'"):
        FitConfig(backbone="packaged:minilm-l6", pooling="max").validate()
    with pytest.raises(ConfigError, match="cannot pool by 'cls'.*no pooling option.*Drop --pooling"):
        _fit(tmp_path, "img", from_arrays(X, y), backbone="scratch:cnn", image_size=16, pooling="cls")


# -- the model card ------------------------------------------------------------------------------------------------
def test_model_card_names_data_metrics_labels_lineage_and_limits(exports, tfidf_run, spam_jsonl):
    res = exports(tfidf_run, "onnx")
    card = (res.path / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((tfidf_run / "metrics.json").read_text())
    for title in ("Inputs and output", "How to load", "Labels", "Data", "Metrics", "Parity with the run", "Lineage",
                  "Intended use and limits", "Files"):
        assert f"## {title}" in card, title
    assert str(spam_jsonl) in card and "modality text" in card
    assert f"| test | {metrics['test']['n']} | {metrics['test']['accuracy']:.4f} |" in card
    assert "0: `ham`, 1: `spam`" in card
    assert "backbone `classical:tfidf`" in card and "strategy `classical`" in card and "run `tfidf`" in card
    assert "synthetic inputs" in card and "**passed**" in card
    assert "import onnxruntime" in card and "term_vocabulary.json" in card


def test_hash_tokenizer_snippet_matches_the_run_tokenizer(tmp_path):
    from transferkit.backbones.text import HashTokenizer
    from transferkit.export.input_files import input_files

    pre = HashTokenizer(vocab_size=1000, max_length=6)
    files = input_files(pre)
    assert files.save(pre, tmp_path) == ["hash_tokenizer.json"]
    back = files.load(tmp_path, pre)
    texts = ["Hello, World! café crème", "one two three four five six seven eight", "x"]
    ns = {"texts": texts, "feeds": {}}
    exec(files.snippet(pre), ns)  # noqa: S102
    ids, mask = ns["feeds"]["input_ids"], ns["feeds"]["attention_mask"]
    assert [list(r[m == 1]) for r, m in zip(ids, mask)] == pre.tokenize(texts) == back.tokenize(texts)


def test_parity_compare_counts_near_ties_and_scales_regression():
    from transferkit.export.parity import EXACT, ParityRule, compare

    ref = np.array([[0.9, 0.1], [0.504, 0.496], [0.2, 0.8], [0.6, 0.4]])
    out = np.array([[0.9, 0.1], [0.496, 0.504], [0.7, 0.3], [0.6, 0.4]])  # a near tie and a real flip
    p = compare(ref, out, "classification", ParityRule(min_top1=0.9), "onnx-int8", "synthetic")
    assert p.top1_agreement == 0.5 and p.near_ties == 1 and not p.ok and "top-1 agreement 0.5000 < 0.9" in p.failures[0]
    assert p.max_abs_diff == pytest.approx(0.5)
    pred = np.array([100.0, 200.0])
    ok = compare(pred, pred + 0.03, "regression", EXACT["regression"], "onnx", "synthetic", scale=40.0)
    bad = compare(pred, pred + 0.05, "regression", EXACT["regression"], "onnx", "synthetic", scale=40.0)
    assert ok.ok and not bad.ok and bad.top1_agreement is None and "x 40 (the target's std)" in bad.failures[0]
    assert not compare(ref, out[:, :1], "classification", EXACT["classification"], "onnx", "x").ok  # wrong shape


def test_synthetic_texts_draw_from_every_vocabulary_and_pass_max_length():
    from transferkit.export.samples import synthetic_texts

    texts = synthetic_texts([["alpha", "beta"], ["gamma"]], max_length=10, n=64)
    words = {w for t in texts for w in t.split()}
    assert words == {"alpha", "beta", "gamma"} and len(texts) == 64
    assert max(len(t.split()) for t in texts) == 18 and min(len(t.split()) for t in texts) == 1
    assert texts == synthetic_texts([["alpha", "beta"], ["gamma"]], max_length=10, n=64)  # reproducible


# -- folders: nothing half-written, no silent replacement -----------------------------------------------------------
def test_existing_folder_is_refused_then_replaced_with_overwrite(tmp_path, pixels_run):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "marker").write_text("earlier")
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):
        export_run(pixels_run, "onnx", out)
    assert sorted(p.name for p in out.iterdir()) == ["marker"]
    res = export_run(pixels_run, "onnx", out, overwrite=True)
    assert res.ok and not (out / "marker").exists() and (out / "model.onnx").is_file()
    assert leftovers(tmp_path) == []
    with pytest.raises(ConfigError, match="holds the run"):
        export_run(pixels_run, "onnx", pixels_run.parent, overwrite=True)
    load_run(pixels_run)


@pytest.mark.parametrize("stage", ["write", "predict"])
def test_failure_leaves_nothing_half_written_and_keeps_the_old_export(monkeypatch, tmp_path, pixels_run, stage):
    out = tmp_path / "exp"
    export_run(pixels_run, "onnx", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(self, *a, **k):
        raise RuntimeError(f"disk full during {stage}")

    monkeypatch.setattr(OnnxFormat, stage, broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(pixels_run, "onnx", out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(RuntimeError):
        export_run(pixels_run, "onnx", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() and leftovers(tmp_path) == []


def test_failed_parity_is_kept_marked_warned_and_exits_3(monkeypatch, tmp_path, pixels_run, capsys):
    good = OnnxFormat.predict
    monkeypatch.setattr(OnnxFormat, "predict", lambda self, run, folder, ds: good(self, run, folder, ds)[:, ::-1])
    with pytest.warns(RuntimeWarning, match="disagrees with its run"):
        res = export_run(pixels_run, "onnx", tmp_path / "bad")
    assert not res.ok and res.parity.top1_agreement < 0.9
    assert json.loads((res.path / "parity.json").read_text())["ok"] is False
    assert "PARITY FAILED" in (res.path / "README.md").read_text()
    code = main(["--quiet", "export", str(pixels_run), "-o", str(tmp_path / "bad2")])
    err = capsys.readouterr().err
    assert code == PARITY_FAILED_EXIT and "PARITY FAILED" in err and (tmp_path / "bad2" / "model.onnx").is_file()


# -- the command ---------------------------------------------------------------------------------------------------
def test_cli_exports_quietly_to_the_default_folder_with_sample_data(tmp_path, pixels_run, digit_files, capsys):
    code = main(["--quiet", "export", str(pixels_run), "--format", "onnx-int8", "--sample", str(digit_files)])
    out, err = capsys.readouterr()
    target = pixels_run / "export-onnx-int8"
    assert code == 0 and err == "" and f"wrote {target}" in out and "top-1 agreement" in out
    parity = json.loads((target / "parity.json").read_text())
    assert parity["inputs"] == str(digit_files) and parity["rows"] == 40
    load_run(pixels_run)  # the run itself still verifies against its manifest


def test_cli_refusals_exit_2_with_one_line(tmp_path, cnn_run, capsys):
    assert main(["--quiet", "export", str(cnn_run), "--format", "hf", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format onnx" in err and not (tmp_path / "x").exists()
    assert main(["--quiet", "export", str(cnn_run), "--format", "onx"]) == 2
    assert "Did you mean 'onnx'?" in capsys.readouterr().err
    assert set(FORMATS.names()) == {"onnx", "onnx-int8", "hf"}


def test_progress_is_reported_without_quiet(tmp_path, pixels_run, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["export", str(pixels_run), "-o", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "export: exporting classical:pixels" in err and "checking parity" in err
