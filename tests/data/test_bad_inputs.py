"""Bad inputs found by the fuzz tests (tests/fuzz), pinned: each gives a one-line DataError / ConfigError naming
the file, line / row / index, column or value and what to do, or reads correctly."""
from __future__ import annotations

import gzip
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from transferkit.config import FitConfig
from transferkit.data import LabelMap, from_arrays, load_path, stratified_split
from transferkit.data.images import ImageStore, image_problem, load_rgb, progress_bars
from transferkit.errors import ConfigError, DataError


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------------------
# JSON / JSONL: line numbers, not character offsets
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, why", [
    ('{"text": "c", "label" "x"}', "Expecting ':' delimiter"),
    ('{"text": "c", "la', "Unterminated string"),
    ("[1, 2]", "JSON array, not an object"),
    ("42", "JSON number, not an object"),
])
def test_jsonl_error_names_file_and_line(tmp_path, bad, why):
    p = tmp_path / "mail.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_path(p)
    msg = one_line(e)
    assert msg.startswith(f"Line 4 of '{p}'") and why in msg, msg
    assert "position" not in msg


def test_jsonl_label_error_gives_row_and_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"is empty at row 2 \(line 3\)"):
        load_path(p)
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ["y"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"holds a list at row 2 \(line 2\).*plain string or number"):
        load_path(p)


def test_json_document_error_gives_line_and_column(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('[\n {"text": "a", "label": "x"},\n {"text": "b" "label": "y"}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"not valid JSON \(line 3, column 15"):
        load_path(p)


# ---------------------------------------------------------------------------------------------------------
# encodings, NUL bytes, gzip
# ---------------------------------------------------------------------------------------------------------
TABLE = "text,label\ncafé au lait,a\nplain tea,b\nnaïve coffee,a\n"


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-8-sig"])
def test_tables_with_a_byte_order_mark_are_decoded(tmp_path, codec):
    p = tmp_path / "t.csv"
    p.write_bytes(TABLE.encode(codec))
    ds = load_path(p)
    assert ds.inputs == ["café au lait", "plain tea", "naïve coffee"] and list(ds.y) == ["a", "b", "a"]
    assert ds.counts["replaced_utf8"] == 0


def test_nul_bytes_name_the_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(TABLE.encode("utf-16-le"))  # UTF-16 without a byte-order mark
    with pytest.raises(DataError, match=r"NUL byte on line 1.*Save the table as UTF-8"):
        load_path(p)
    p.write_bytes(TABLE.replace("plain", "pl\x00ain").encode())
    with pytest.raises(DataError, match="NUL byte on line 3"):
        load_path(p)


def test_truncated_or_fake_gzip_is_a_data_error(tmp_path):
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(TABLE.encode() * 20)[:40])
    with pytest.raises(DataError, match=r"Cannot decompress '.*t.csv.gz'.*truncated"):
        load_path(p)
    p.write_bytes(TABLE.encode())
    with pytest.raises(DataError, match="Not a gzipped file"):
        load_path(p)


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    from transferkit.data import loaders

    monkeypatch.setattr(loaders, "GZIP_MIN_LIMIT", 1 << 16)
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"text,label\n" + b"a,b\n" * 200_000))  # 800 kB from about 2 kB
    with pytest.raises(DataError, match="gzip bomb"):
        load_path(p)


def test_truncated_parquet_is_a_data_error(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"]}).to_parquet(p)
    p.write_bytes(p.read_bytes()[:-9])
    with pytest.raises(DataError, match=r"Cannot read Parquet file '.*t.parquet'.*write it again"):
        load_path(p)


def test_lone_cr_inside_a_field_is_text_not_a_line_break(tmp_path):
    """pandas' writer leaves a lone CR unquoted; reading it as a line break lost the row's label."""
    p = tmp_path / "t.csv"
    pd.DataFrame({"text": ["one\r two", "three", "four"], "label": ["a", "b", "a"]}).to_csv(p, index=False)
    ds = load_path(p)
    assert ds.inputs == ["one\r two", "three", "four"] and list(ds.y) == ["a", "b", "a"]
    p.write_bytes(b"text,label\r\none,a\r\n\"two\r\nlines\",b\r\n")  # CRLF lines
    assert load_path(p).inputs == ["one", "two\nlines"]


def test_unclosed_quote_and_ragged_row_name_the_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('text,label\na,x\nb,y\n"c,x\nd,y\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"quoted field that starts on line 4 .* never closed"):
        load_path(p)
    p.write_text("text,label\na,x\nb,y,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match="Line 3 of .* has 3 fields but the header has 2"):
        load_path(p)


# ---------------------------------------------------------------------------------------------------------
# labels and targets in tables
# ---------------------------------------------------------------------------------------------------------
def test_csv_empty_label_message_is_kept(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("text,label\nhello,a\nworld,\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_path(p)
    assert one_line(e) == f"Label column 'label' in '{p}' is empty at row 2. Fill it in or drop the row."


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_regression_target_must_be_finite(tmp_path, value):
    p = tmp_path / "r.csv"
    p.write_text(f"text,label\na,1.5\nb,{value}\nc,2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"at row 2; regression needs finite numbers"):
        load_path(p, task="regression")


def test_all_empty_text_column_is_a_data_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\n,a\n ,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="text column text of .* is empty in every row.*--text-column"):
        load_path(p)


def test_undecodable_label_bytes_never_leak_the_internal_marker(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"text,label\nx y,caf\xe9\nz w,tea\n")
    ds = load_path(p)
    assert list(ds.y) == ["caf\ufffd", "tea"]


def test_image_table_with_unusable_paths_skips_them(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "pipe.png")
    p = tmp_path / "t.parquet"
    pd.DataFrame({"image": ["ok.png", "bad\x00name.png", "x" * 5000 + ".png", "pipe.png", None, ""],
                  "label": list("abcdef")}).to_parquet(p)
    ds = load_path(p)  # the FIFO is never opened (that would block)
    assert ds.inputs == [str(tmp_path / "ok.png")] and ds.counts["skipped_images"] == 5
    pd.DataFrame({"image": ["ok.png", "pipe.png"], "label": ["a", "b"]}).to_parquet(p)
    with pytest.raises(DataError, match=r"pipe.png' \(row 2, column 'image'\) is unreadable \(it is not a regular"):
        load_path(p, strict=True)


# ---------------------------------------------------------------------------------------------------------
# from_arrays: NaN / inf pixels, missing labels
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_name_the_first_bad_image(digits, bad):
    X = digits[0][:40].astype(np.float32)
    X[23, 4, 5] = bad
    X[31, 0, 0] = bad
    with pytest.raises(DataError) as e:
        from_arrays(X, digits[1][:40])
    assert one_line(e).startswith("X[23] (image 23) has NaN or infinite pixels")
    X[23, 4, 5] = X[31, 0, 0] = 0.0
    assert from_arrays(X, digits[1][:40]).value_max == 16.0


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, ""])
@pytest.mark.parametrize("container", [list, lambda v: np.asarray(v, dtype=object)])
def test_missing_label_names_the_index_not_a_class_called_nan(missing, container):
    y = ["spam", "ham"] * 5
    y[7] = missing
    with pytest.raises(DataError) as e:
        from_arrays([f"text number {i}" for i in range(10)], container(y))
    assert one_line(e).startswith("y[7] is missing")


def test_nan_in_a_float_target_array_names_the_index():
    y = np.linspace(0, 1, 10)
    y[4] = np.nan
    with pytest.raises(DataError, match=r"^y\[4\] is missing"):
        from_arrays(np.zeros((10, 8, 8), np.uint8), y)


@pytest.mark.parametrize("y, match", [
    (np.eye(2)[np.arange(10) % 2], r"y has shape \(10, 2\); it must be 1-D"),
    ([[i] for i in range(10)], r"y has shape \(10, 1\)"),
    ([{"c": 1}] * 10, r"y\[0\] is a dict"),
    ("abc", "y must be a sequence of labels"),
])
def test_malformed_labels_are_data_errors(y, match):
    with pytest.raises(DataError, match=match):
        from_arrays(np.zeros((10, 8, 8), np.uint8), y)


@pytest.mark.parametrize("X, match", [
    (np.zeros((5, 8, 8, 7)), "no channel axis of size 1, 3 or 4"),
    (np.zeros((5, 8, 8, 3, 1)), "images must be"),
    (np.zeros((0, 8, 8)), "holds no images"),
    (np.zeros((5, 0, 8)), "have no pixels"),
    (np.zeros((5, 8, 8), dtype=complex), "must hold numbers"),
    (np.empty((5, 8, 8), dtype=object), "array of Python objects"),
    (["a text", None, "b"], r"X\[1\] is a NoneType"),
    ([], "X is empty"),
    (["", " "], "Every text in X is empty"),
])
def test_malformed_inputs_are_data_errors(X, match):
    with pytest.raises(DataError, match=match):
        from_arrays(X)


def test_fit_without_labels_is_a_data_error():
    from transferkit.pipeline import fit

    with pytest.raises(DataError, match="no labels"):
        fit(FitConfig(backbone="classical:tfidf", strategy="classical"), train=from_arrays(["a b", "c d"] * 5),
            save=False, progress=False)


def test_label_map_and_split_refuse_missing_labels_and_hint_regression():
    with pytest.raises(DataError, match="no labels"):
        LabelMap.fit(None)
    with pytest.raises(DataError, match="no labels"):
        stratified_split(None, (0.2, 0.2), seed=0)
    assert LabelMap.fit(np.asarray([1, "1", 2], dtype=object)).classes == [1, 2]  # encode() matches by text
    with pytest.raises(DataError, match="--task regression"):
        stratified_split(np.random.default_rng(0).normal(size=30), (0.2, 0.2), seed=0)


# ---------------------------------------------------------------------------------------------------------
# images: FIFOs, bombs, NaN TIFFs, odd names, progress
# ---------------------------------------------------------------------------------------------------------
def test_fifo_named_like_an_image_is_refused_without_blocking(tmp_path):
    p = tmp_path / "pipe.png"
    os.mkfifo(p)
    result = {}
    t = threading.Thread(target=lambda: result.update(problem=image_problem(str(p))), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "opening a FIFO blocked"
    assert "not a regular file" in result["problem"]
    with pytest.raises(DataError, match="pipe.png.*not a regular file"):
        load_rgb(str(p), 8)


def test_float_tiff_with_nan_decodes_without_warnings(tmp_path):
    a = np.linspace(0, 10, 64, dtype=np.float32).reshape(8, 8)
    a[2] = np.nan
    p = tmp_path / "f.tif"
    Image.fromarray(a).save(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_rgb(str(p), 8)
    assert out[2].max() == 0 and out[7, 7, 0] == 255


def test_non_utf8_file_names_give_printable_ids(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / cls / "0.png")
    odd = os.fsdecode(bytes(tmp_path / "a") + b"/caf\xe9.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(odd, format="PNG")
    ds = load_path(tmp_path)
    assert odd in ds.inputs  # the real path, to open
    for i in ds.ids:
        i.encode("utf-8")  # printable: no lone surrogates
    assert "a/caf\\xe9.png" in ds.ids


def _folder(root, n):
    for i in range(n):
        d = root / "ab"[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6, 3), i % 250, np.uint8)).save(d / f"{i}.png")
    return load_path(root)


def test_progress_bars_off_silences_image_decoding(tmp_path, capsys, lite0):
    ds = _folder(tmp_path, 300)
    ImageStore(ds, lite0.preprocess)
    assert "decode images" in capsys.readouterr().err  # shown by default, for 256 images or more
    with progress_bars(False):
        ImageStore(ds, lite0.preprocess)
    assert capsys.readouterr().err == ""
    ImageStore(ds, lite0.preprocess, progress=False)
    assert capsys.readouterr().err == ""


def test_quiet_cli_prints_no_progress_bar(tmp_path, capsys):
    from tests.helpers import cli

    _folder(tmp_path / "imgs", 420)  # a training split of 256 images or more
    capsys.readouterr()
    assert cli("--quiet", "fit", "--train", tmp_path / "imgs", "--backbone", "classical:pixels", "--strategy",
               "classical", "--runs-dir", tmp_path / "runs", "--name", "q") == 0
    err = capsys.readouterr().err
    assert not re.search(r"\d+%\||it/s|img/s", err), err


# ---------------------------------------------------------------------------------------------------------
# YAML configs
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, match", [
    ("epochs: 3\nbatch_size [1, 2\n", r"expected ':' \(while scanning a simple key at line 2, column 1"),
    ("1: 2\n", r"Key 1 in .* is not a name"),
    ("epochs: five\n", r"'epochs' parameter of FitConfig must be an integer >= 1. Got 'five'"),
    ("epochs: [1, 2]\n", r"'epochs' in .*c.yaml must be an integer; got \[1, 2\]"),
    ("name: 123\n", r"'name' in .*c.yaml must be a string \(quote it"),
    ("strict: 'no'\n", r"'strict' in .*c.yaml must be true or false"),
    ("training: [1]\n", r"'training' in .*c.yaml must be a mapping"),
    ("- epochs: 1\n", r"must hold a mapping of key: value .*not a YAML list"),
    ("seed: " + "9" * 30 + "\n", r"'seed' parameter of FitConfig must be an integer in \[0, "),
    ("seed: " + "9" * 5000 + "\n", r"cannot be read \(Exceeds the limit"),
    ("probe_grid: " + "[" * 500 + "]" * 500 + "\n", r"nests brackets 500 levels deep"),
    ("probe_grid: []\n", r"'probe_grid' parameter of FitConfig must be a non-empty list of positive numbers"),
    ("name: ../elsewhere\n", r"'name' parameter of FitConfig must be a plain folder name"),
    ("image_size: 100000000\n", r"'image_size' parameter of FitConfig must be an integer in \[8, 4096\]"),
])
def test_bad_yaml_configs_are_one_line_config_errors(tmp_path, text, match):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        FitConfig.from_yaml(p).validate()
    assert re.search(match, one_line(e)), str(e.value)


def test_config_files_that_are_not_text_or_not_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes("epochs: 2\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0 is 0xff\)"):
        FitConfig.from_yaml(p)
    with pytest.raises(ConfigError, match="is not a regular file"):
        FitConfig.from_yaml(tmp_path)
    p.write_bytes(b"\xef\xbb\xbfepochs: 2\n")  # a UTF-8 byte-order mark is fine
    assert FitConfig.from_yaml(p).training.epochs == 2


def test_yaml_reads_1e_minus_3_as_a_number_for_float_settings(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as text; a float setting takes the number it spells."""
    p = tmp_path / "c.yaml"
    p.write_text("lr: 1e-3\nval_fraction: '0.2'\n", encoding="utf-8")
    c = FitConfig.from_yaml(p).validate()
    assert c.training.lr == 1e-3 and c.val_fraction == 0.2


def test_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    """Nine levels of nine aliases (9^9 leaves once copied) under a known key: refused from its type, at once."""
    import time

    levels = ["&a [x, x, x, x, x, x, x, x, x]"] + [
        f"&{k} [{', '.join([f'*{prev}'] * 9)}]" for prev, k in zip("abcdefgh", "bcdefghi")]
    p = tmp_path / "c.yaml"
    p.write_text(f"candidates: [{', '.join(levels)}]\n", encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="'candidates' in .* must be a string"):
        FitConfig.from_yaml(p)
    assert time.perf_counter() - t0 < 2.0


def test_programmatic_configs_get_the_same_type_checks():
    with pytest.raises(ConfigError, match="'runs_dir' parameter of FitConfig must be a string"):
        FitConfig(runs_dir=5).validate()
    cfg = FitConfig.from_dict({"runs_dir": Path("/tmp/x"), "seed": np.int64(3),
                               "lr": np.float32(0.5)})
    assert cfg.runs_dir == "/tmp/x" and type(cfg.seed) is int and cfg.training.lr == 0.5
