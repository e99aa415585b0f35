"""Table loaders (CSV / JSONL / Parquet): text columns, joined text columns, image-path columns, errors."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from transferkit.data import Columns, from_arrays, load_path
from transferkit.errors import DataError


@pytest.fixture
def mail_df(spam_records):
    return pd.DataFrame(spam_records[:30])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "jsonl.gz", "tsv"])
def test_text_table_formats(tmp_path, mail_df, fmt):
    p = tmp_path / f"mail.{fmt}"
    if fmt == "csv":
        mail_df.to_csv(p, index=False)
    elif fmt == "tsv":
        mail_df.to_csv(p, index=False, sep="\t")
    elif fmt == "parquet":
        mail_df.to_parquet(p, index=False)
    elif fmt == "jsonl":
        mail_df.to_json(p, orient="records", lines=True)
    else:
        with gzip.open(p, "wt", encoding="utf-8") as f:
            for r in mail_df.to_dict("records"):
                f.write(json.dumps(r) + "\n")
    ds = load_path(p, Columns(text="subject", label="label", id="id"))
    assert ds.modality == "text" and len(ds) == 30
    assert ds.inputs == ["" if s is None else str(s) for s in mail_df["subject"]]
    assert list(ds.y) == list(mail_df["label"])
    assert ds.ids == list(mail_df["id"])


def test_text_column_guessed_when_not_named(tmp_path, mail_df):
    p = tmp_path / "m.csv"
    mail_df.to_csv(p, index=False)
    ds = load_path(p)  # no text column given: 'body' is found
    assert ds.inputs[3] == str(mail_df["body"][3])


def test_multiple_text_columns_are_joined(tmp_path, mail_df):
    p = tmp_path / "m.jsonl"
    mail_df.to_json(p, orient="records", lines=True)
    ds = load_path(p, Columns(text="subject,body"))
    for i in (0, 7, 29):
        assert ds.inputs[i] == f"{mail_df['subject'][i]}\n{mail_df['body'][i]}"


def test_empty_text_cell_is_empty_string_not_nan(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"subject": ["hi", None], "body": ["b1", "b2"], "label": ["x", "y"]}).to_parquet(p)
    ds = load_path(p, Columns(text="subject,body"))
    assert ds.inputs == ["hi\nb1", "\nb2"]


def test_missing_column_lists_existing_columns(tmp_path, mail_df):
    p = tmp_path / "m.csv"
    mail_df.to_csv(p, index=False)
    with pytest.raises(DataError) as e:
        load_path(p, Columns(text="subjct"))
    msg = str(e.value)
    assert "'subjct'" in msg and "Did you mean 'subject'" in msg
    for col in ("id", "group", "label", "subject", "body"):
        assert col in msg
    with pytest.raises(DataError, match="Column 'target'.*Columns: id, group, label, subject, body"):
        load_path(p, Columns(text="body", label="target"))


def test_no_text_or_image_column(tmp_path):
    p = tmp_path / "n.csv"
    pd.DataFrame({"a": [1, 2], "label": ["x", "y"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="No text or image column.*Columns: a, label"):
        load_path(p)


def test_empty_label_is_reported_with_row(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("text,label\nhello,a\nworld,\nagain,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty at row 2"):
        load_path(p)


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"text,label\ncaf\xe9 au lait,a\nplain ascii,b\nna\xefve \xff bytes,a\nok,b\n")
    ds = load_path(p)
    assert len(ds) == 4
    assert ds.counts["replaced_utf8"] == 2
    assert ds.inputs[0] == "caf\ufffd au lait"
    assert ds.inputs[1] == "plain ascii"


def test_regression_label_must_be_numeric(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("text,label\na,1.5\nb,2\nc,three\n", encoding="utf-8")
    with pytest.raises(DataError, match="non-numeric value 'three'"):
        load_path(p, task="regression")
    p.write_text("text,label\na,1.5\nb,2\nc,-3\n", encoding="utf-8")
    ds = load_path(p, task="regression")
    np.testing.assert_allclose(ds.y, [1.5, 2.0, -3.0])


@pytest.fixture
def image_table_dir(tmp_path, mnist):
    from tests.helpers import mnist_subset

    x, y = mnist_subset(mnist, [2, 5], 5)
    (tmp_path / "pics").mkdir()
    rows = []
    for i, (img, lab) in enumerate(zip(x, y)):
        name = f"pics/d{i}.png"
        Image.fromarray(img).save(tmp_path / name)
        rows.append({"file": name, "digit": f"d{lab}", "key": f"k{i}"})
    rows.append({"file": "pics/missing.png", "digit": "d2", "key": "kmissing"})
    return tmp_path, pd.DataFrame(rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_image_path_column_relative_to_table(image_table_dir, fmt):
    root, df = image_table_dir
    p = root / f"index.{fmt}"
    {"csv": lambda: df.to_csv(p, index=False), "jsonl": lambda: df.to_json(p, orient="records", lines=True),
     "parquet": lambda: df.to_parquet(p, index=False)}[fmt]()
    ds = load_path(p, Columns(image="file", label="digit", id="key"))
    assert ds.modality == "image" and len(ds) == 10
    assert ds.counts["skipped_images"] == 1
    assert "kmissing" not in ds.ids and ds.ids[0] == "k0"
    assert all(str(root / "pics") in q for q in ds.inputs)
    assert list(ds.y) == list(df["digit"][:10])
    with pytest.raises(DataError, match="missing.png.*row 11.*missing"):
        load_path(p, Columns(image="file", label="digit"), strict=True)


def test_unknown_file_type(tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder or a table"):
        load_path(p)


def test_from_arrays_detects_modality(tmp_path, digits):
    X, y = digits
    ds = from_arrays(X[:10], y[:10])
    assert ds.modality == "image" and ds.value_max == 16.0 and ds.is_array_images
    ds = from_arrays(["a text", "another"], ["x", "y"])
    assert ds.modality == "text"
    p = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(p)
    assert from_arrays([str(p), str(p)]).modality == "image"
    with pytest.raises(DataError, match="2 samples but y has 3"):
        from_arrays(["a", "b"], [1, 2, 3])
    with pytest.raises(DataError, match="numpy image array"):
        from_arrays(np.zeros((5, 3)))


def test_non_utf8_bytes_in_jsonl_and_gzipped_csv(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"text": "caf\xe9 cr\xe8me", "label": "a"}\n{"text": "fine", "label": "b"}\n')
    ds = load_path(p)
    assert ds.inputs == ["caf\ufffd cr\ufffdme", "fine"] and ds.counts["replaced_utf8"] == 1
    p = tmp_path / "m.csv.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"text,label\n\xff\xfe odd,a\nfine,b\nalso fine,b\n")
    ds = load_path(p)
    assert ds.counts["replaced_utf8"] == 1 and ds.inputs[1:] == ["fine", "also fine"]
