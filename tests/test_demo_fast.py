"""`transferkit demo --fast`: offline, packaged EfficientNet-Lite0 vs a scratch CNN vs pixels + LR on digits."""
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


def test_demo_rows(demo):
    out, rows = demo
    assert [(r["strategy"], r["backbone"]) for r in rows[1:]] == [
        ("linear-probe", "packaged:efficientnet_lite0"), ("lp-ft", "packaged:efficientnet_lite0"),
        ("fine-tune", "packaged:efficientnet_lite0"), ("fine-tune", "scratch:cnn")]
    assert rows[0]["strategy"] == "classical" and rows[0]["report"] is None
    for r in rows:
        assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0 and r["seconds"] > 0
    # the pretrained linear probe and the pixel baseline are far above chance (0.1) on digits
    assert rows[0]["macro_f1"] > 0.6 and rows[1]["macro_f1"] > 0.6, rows
    # lp-ft starts from the probe, and the probe competes as epoch 0
    for r in rows[1:]:
        run = out / f"{r['strategy']}-{r['backbone'].split(':')[1]}"
        assert r["report"] == str(run / "report.md")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["macro_f1"] == pytest.approx(r["macro_f1"])
        assert metrics["details"]["sizes"]["test"] == 60  # 15 % of 400
        assert json.loads((run / "backbone.json").read_text())["preprocessing"]["size"] == 64
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(rows))


def test_demo_readme_table_links_and_verdict(demo):
    out, rows = demo
    md = (out / "README.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| strategy")]
    assert len(table) == len(rows)
    for line, r in zip(table, rows):
        assert f"| {r['macro_f1']:.4f} |" in line and r["strategy"] in line
    links = re.findall(r"\]\(([^)]+report\.md)\)", md)
    assert len(links) == 4
    for link in links:
        assert (out / link).exists()
        report = (out / link).read_text()
        for img in markdown_images(report):
            assert_png((out / link).parent / img)
    transfer = max(r["macro_f1"] for r in rows if r["backbone"].startswith("packaged:"))
    baseline = max(r["macro_f1"] for r in rows if not r["backbone"].startswith("packaged:"))
    verdict = next(ln for ln in md.splitlines() if ln.startswith("Transfer "))
    assert ("helped" in verdict) == (transfer - baseline > 0) and "transfer gain" in verdict
    assert f"= {transfer - baseline:+.4f} macro-F1" in verdict
