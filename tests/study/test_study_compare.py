"""The data-efficiency study: same splits for every strategy, budgets x seeds, report + curve, resumable."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.helpers import assert_png, markdown_images
from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.errors import ConfigError
from transferkit.study import StudyConfig, compare
from transferkit.study.compare import Study, parse_budget

STRATEGIES = ["classical", "scratch", "linear-probe"]
BUDGETS = [5, "all"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def study_data(digits):
    X, y = digits
    idx = np.random.default_rng(11).permutation(len(y))[:300]
    return from_arrays(X[idx], y[idx])


def _cfg(out, **base):
    return StudyConfig(base=FitConfig.from_dict(dict(image_size=32, epochs=1, min_steps=0, probe_grid=[0.01, 0.1, 1.0], **base)),
                       strategies=list(STRATEGIES), budgets=list(BUDGETS), seeds=list(SEEDS), out=str(out))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, study_data):
    out = tmp_path_factory.mktemp("study") / "cmp"
    return out, compare(_cfg(out), data=study_data, progress=False)


def test_study_writes_report_curve_summary_and_cells(finished):
    out, summary = finished
    assert_png(out / "curve.png")
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == len(STRATEGIES) * len(BUDGETS) * len(SEEDS)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["verdict"] == summary["verdict"] and on_disk["gains"] == summary["gains"]
    md = (out / "report.md").read_text()
    assert summary["verdict"] in md
    assert "curve.png" in markdown_images(md)
    assert "transfer gain" in md
    for series in summary["series"]:
        assert f"| {series} |" in md


def test_cells_share_splits_and_respect_budgets(finished, study_data):
    out, summary = finished
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    for c in cells:
        assert c["metric"] == "macro_f1" and 0.0 <= c["value"] <= 1.0
        if c["budget"] == 5:
            assert c["n_train"] == 50  # 5 per class x 10 classes
    # within a seed, every strategy at the same budget trained on the same number of examples
    for seed in SEEDS:
        for budget in BUDGETS:
            ns = {c["n_train"] for c in cells if c["seed"] == seed and c["budget"] == budget}
            assert len(ns) == 1, (seed, budget, ns)
    full = {c["n_train"] for c in cells if c["budget"] == "all"}
    assert all(200 <= n < 300 for n in full)  # the pool after the validation and test parts are split off
    assert {c["series"] for c in cells} == {"classical", "scratch", "linear-probe (packaged:efficientnet_lite0)"}


def test_summary_has_mean_std_gain_per_budget_and_a_verdict(finished):
    _, summary = finished
    assert summary["budgets"] == ["5", "all"]
    table = summary["table"]
    for series, row in table.items():
        for b in ("5", "all"):
            vals = [c["value"] for c in summary["cells"] if c["series"] == series and str(c["budget"]) == b]
            assert row[b]["n"] == len(SEEDS)
            assert row[b]["mean"] == pytest.approx(np.mean(vals)) and row[b]["std"] == pytest.approx(np.std(vals))
    lp = "linear-probe (packaged:efficientnet_lite0)"
    for b in ("5", "all"):
        g = summary["gains"][b]
        best_base = max(table["classical"][b]["mean"], table["scratch"][b]["mean"])
        assert g["best_transfer"] == lp
        assert g["gain"] == pytest.approx(table[lp][b]["mean"] - best_base)
        assert g["negative"] == (g["gain"] < 0)
    verdict = summary["verdict"]
    assert verdict.startswith("Transfer") and verdict.endswith(".")
    assert re.search(r"[+-]\d\.\d{3} macro_f1", verdict)
    # classical pixels + logistic regression on 200+ digits is a strong baseline: clearly above chance
    assert table["classical"]["all"]["mean"] > 0.6


def test_study_resumes_without_recomputing(monkeypatch, finished, study_data):
    out, summary = finished
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}

    def must_not_run(*a, **k):
        raise AssertionError("a finished cell was computed again")

    monkeypatch.setattr(Study, "run_cell", must_not_run)
    again = compare(_cfg(out), data=study_data, progress=False)
    assert again["gains"] == summary["gains"] and again["verdict"] == summary["verdict"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == mtimes


def test_interrupted_study_computes_only_missing_cells(monkeypatch, finished, study_data, tmp_path):
    import shutil

    out, summary = finished
    copy = tmp_path / "resume"
    shutil.copytree(out, copy)
    removed = sorted((copy / "cells").glob("classical__*"))
    assert len(removed) == len(BUDGETS) * len(SEEDS)
    for p in removed:
        p.unlink()
    calls = []
    real = Study.run_cell

    def counting(self, strategy, *a, **k):
        calls.append(strategy)
        return real(self, strategy, *a, **k)

    monkeypatch.setattr(Study, "run_cell", counting)
    again = compare(_cfg(copy), data=study_data, progress=False)
    assert calls == ["classical"] * len(removed)
    # classical is deterministic: the recomputed cells give the same table
    for b, row in summary["table"]["classical"].items():
        assert again["table"]["classical"][b]["mean"] == pytest.approx(row["mean"])


def test_resuming_with_other_settings_is_refused(finished, study_data):
    out, _ = finished
    with pytest.raises(ConfigError, match="other settings.*epochs"):
        compare(StudyConfig(base=FitConfig.from_dict(dict(image_size=32, epochs=2, min_steps=0, probe_grid=[0.01, 0.1, 1.0])),
                            strategies=list(STRATEGIES), budgets=list(BUDGETS), seeds=list(SEEDS), out=str(out)),
                data=study_data, progress=False)


@pytest.mark.parametrize("text, value", [("all", "all"), ("5", 5), ("0.25", 0.25)])
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("kw, match", [({"strategies": ["classical", "fine-tuen"]}, "Did you mean 'fine-tune'"),
                                       ({"budgets": [0]}, "Budget 0"),
                                       ({"budgets": [1.5]}, "Budget 1.5"),
                                       ({"seeds": []}, "at least one seed")])
def test_invalid_study_config(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig(out=str(tmp_path), **kw).validate()
    with pytest.raises(ConfigError):
        parse_budget("lots")


def test_probe_features_are_extracted_once_for_all_seeds(tmp_path, study_data):
    cfg = _cfg(tmp_path / "once")
    cfg.strategies = ["linear-probe"]
    study = Study(cfg, data=study_data, progress=False)
    summary = study.run()
    # one cache look-up for the whole dataset, not one per seed and split
    assert study.cache.hits + study.cache.misses == 1
    assert len(summary["cells"]) == len(BUDGETS) * len(SEEDS)
    (spec, full), = study._features.items()
    assert len(full) == len(study_data)
    split = study._split_indices(1)
    assert np.array_equal(study._probe_features(spec, split)["test"], full[split["test"]])


def test_resume_tolerates_config_keys_added_later_with_default_values(finished, study_data, tmp_path):
    import shutil

    out, summary = finished
    copy = tmp_path / "older"
    shutil.copytree(out, copy)
    settings = json.loads((copy / "study.json").read_text())
    del settings["base"]["engine"]  # a study written before FitConfig had this key
    (copy / "study.json").write_text(json.dumps(settings))
    again = compare(_cfg(copy), data=study_data, progress=False)
    assert again["gains"] == summary["gains"]
    with pytest.raises(ConfigError, match="engine"):
        compare(_cfg(copy, engine="onnx"), data=study_data, progress=False)


@pytest.mark.parametrize("budgets, phrase", [([8, 64], "at the largest budget studied (k=64)"),
                                             ([8, "all"], "with all labels")])
def test_verdict_names_the_largest_budget_it_compares_with(budgets, phrase):
    from transferkit.study.report import summarise

    cells = [{"series": s, "budget": b, "value": v + (0.1 if b != 8 else 0.0), "n_train": 1, "metric": "macro_f1"}
             for b in budgets for s, v in (("classical", 0.8), ("hybrid (x)", 0.85))]
    verdict = summarise(cells, None)["verdict"]
    assert phrase in verdict and "k=8" in verdict


def test_compare_without_data_is_a_one_line_error(tmp_path, capsys):
    from tests.helpers import cli, one_line_error

    assert cli("compare", "--out", tmp_path / "s") == 2
    assert "--train DATA" in one_line_error(capsys.readouterr().err)
