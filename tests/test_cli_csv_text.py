"""The CLI on a CSV of real e-mails (SpamAssassin subset) with packaged MiniLM: fit with flags, non-UTF-8
bytes reported, evaluate, predict from a CSV of unlabelled texts to JSON and CSV with top-k columns."""
from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from tests.helpers import cli


@pytest.fixture(scope="module")
def mail_csv(tmp_path_factory, spam_records):
    """100 real e-mails as CSV, plus 3 rows whose bytes are not valid UTF-8."""
    d = tmp_path_factory.mktemp("csvtext")
    p = d / "mail.csv"
    pd.DataFrame(spam_records[:100]).to_csv(p, index=False)
    with open(p, "ab") as f:
        f.write(b"x1,spam-x,spam,Cheap \xff\xfe pills,Buy now \xe9 limited offer\n")
        f.write(b"x2,spam-x,spam,WIN \xa0 money,Click here \xff\n")
        f.write(b"x3,ham-x,ham,Caf\xe9 meeting,See you at the caf\xe9 tomorrow\n")
    return p


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, mail_csv):
    runs = tmp_path_factory.mktemp("csvruns")
    rc = cli("--quiet", "fit", "--train", mail_csv, "--text-column", "subject,body", "--label-column", "label",
             "--backbone", "packaged:minilm-l6", "--max-length", 32, "--strategy", "linear-probe",
             "--probe-grid", "0.1,1,10", "--runs-dir", runs, "--name", "mail")
    assert rc == 0
    return runs / "mail"


def test_fit_csv_of_texts(csv_run, spam_records):
    for f in ("model.safetensors", "config.yaml", "labels.json", "backbone.json", "metrics.json", "report.md",
              "confusion_matrix.png", "run.json", "fit.log"):
        assert (csv_run / f).is_file(), f
    metrics = json.loads((csv_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.65, metrics["test"]  # balanced ham / spam
    # only the three rows with invalid bytes count, not e-mails that already contain a literal U+FFFD
    already = sum("\ufffd" in f"{r['subject']}\n{r['body']}" for r in spam_records[:100])
    assert already > 0
    assert metrics["details"]["data_issues"] == {"replaced_utf8": 3}
    assert "replaced utf8: 3" in (csv_run / "report.md").read_text()
    assert json.loads((csv_run / "labels.json").read_text())["classes"] == ["ham", "spam"]
    assert json.loads((csv_run / "backbone.json").read_text())["max_length"] == 32


def test_evaluate_on_csv(csv_run, mail_csv, tmp_path, capsys):
    capsys.readouterr()
    rc = cli("evaluate", csv_run, mail_csv, "--out", tmp_path / "ev")
    out, err = capsys.readouterr()
    assert rc == 0, err
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n"] == 103
    assert sum(m["per_class"][c]["support"] for c in ("ham", "spam")) == 103
    assert f"accuracy={m['accuracy']:.4f}" in out


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_predict_unlabelled_csv_with_top_k(csv_run, spam_records, tmp_path, fmt, capsys):
    texts = spam_records[100:110]
    src = tmp_path / "new.csv"
    pd.DataFrame([{"subject": r["subject"], "body": r["body"]} for r in texts]).to_csv(src, index=False)
    out = tmp_path / f"preds.{fmt}"
    rc = cli("predict", csv_run, src, "-o", out, "--top-k", 2)
    _, err = capsys.readouterr()
    assert rc == 0, err
    if fmt == "json":
        rows = json.loads(out.read_text())
    else:
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["id", "label", "probability", "top1_label", "top1_probability", "top2_label",
                                 "top2_probability"]
    assert len(rows) == 10
    for r in rows:
        assert r["label"] == r["top1_label"] and {r["top1_label"], r["top2_label"]} == {"ham", "spam"}
        p1, p2 = float(r["top1_probability"]), float(r["top2_probability"])
        assert p1 >= p2 and p1 + p2 == pytest.approx(1.0, abs=1e-4)
    correct = sum(r["label"] == t["label"] for r, t in zip(rows, texts))
    assert correct >= 6, correct
