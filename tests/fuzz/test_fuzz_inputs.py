"""Fuzz: generated broken inputs (tables, image folders, YAML configs, arrays, predict / evaluate inputs) through
the CLI entry point in-process and through the Python API.

Every example must end in a clean result or a clean error: exit code 0, or exit code 2 with exactly one
``transferkit: error:`` line and no traceback (CLI); a result or a ``DataError`` / ``ConfigError`` (API). No
example may hang (each has a time limit), grow memory by more than ``MAX_RSS_GROWTH_MB``, or leave a run folder
half-written: after a failed fit there is neither ``runs/run`` nor ``runs/.run.partial``, after a success the run
is complete. The generators live in ``tests/fuzz/cases.py`` (the long run is ``benchmarks/bench_fuzz.py``).
Deterministic (``derandomize=True``); about a minute on one core.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import cases as C

MAX_RSS_GROWTH_MB = 1024
CASE_TIMEOUT_S = 60.0


def fuzz(n: int):
    """Deterministic hypothesis settings for ``n`` examples (no example database, no deadline)."""
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """A text run and an image run (classical, tiny) for predict / evaluate."""
    return C.fit_reference_runs(tmp_path_factory.mktemp("reference_runs"))


def check(case: C.Case, via: str, runs: dict[str, str] | None = None) -> C.Outcome:
    """Run ``case`` in a fresh folder and assert the outcome is clean, bounded and leaves nothing half-written."""
    with tempfile.TemporaryDirectory() as d:
        out = C.run_case(case, Path(d), runs, via=via, timeout=CASE_TIMEOUT_S)
    assert out.clean, f"{case!r} via {via}: {C.describe(out)}\n{out.detail}"
    assert out.rss_growth_mb < MAX_RSS_GROWTH_MB, f"{case!r}: memory grew by {out.rss_growth_mb:.0f} MB"
    if out.kind == "error" and via == "cli":
        assert out.error.startswith("transferkit: error: ") and len(out.error) > len("transferkit: error: ") + 10
    return out


# ---------------------------------------------------------------------------------------------------------
# generated cases, per family and entry point
# ---------------------------------------------------------------------------------------------------------
@fuzz(40)
@given(case=C.table_cases())
def test_damaged_tables_via_cli(case):
    check(case, "cli")


@fuzz(30)
@given(case=C.table_cases())
def test_damaged_tables_via_api(case):
    check(case, "api")


@fuzz(30)
@given(case=C.image_cases())
def test_damaged_image_folders_via_cli(case):
    check(case, "cli")


@fuzz(25)
@given(case=C.image_cases())
def test_damaged_image_folders_via_api(case):
    check(case, "api")


@fuzz(40)
@given(case=C.config_cases())
def test_broken_yaml_configs_via_cli(case):
    check(case, "cli")


@fuzz(25)
@given(case=C.config_cases())
def test_broken_yaml_configs_via_api(case):
    check(case, "api")


@fuzz(40)
@given(case=C.predict_cases())
def test_predict_and_evaluate_on_damaged_inputs(case, runs):
    check(case, "cli", runs)


@fuzz(60)
@given(case=C.array_cases())
def test_damaged_arrays_and_labels_via_api(case):
    check(case, "api")


# ---------------------------------------------------------------------------------------------------------
# every hand-made damage once (the generators above sample them)
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", C.BROKEN_YAML, ids=lambda t: repr(t[:30]))
def test_each_broken_yaml(text):
    case = C.Case("config", f"yaml {text[:30]!r}", {"t.csv": C.reference_table(), "c.yaml": text},
                  argv=["--quiet", "fit", "--config", "{root}/c.yaml", "--train", "{root}/t.csv", *C.TEXT_FIT,
                        "--runs-dir", "{root}/runs", "--name", C.RUN_NAME],
                  api=("config", ("{root}/c.yaml", "{root}/t.csv", "{root}/runs")), writes=(f"runs/{C.RUN_NAME}",))
    cli, api = check(case, "cli"), check(case, "api")
    assert cli.kind == api.kind, f"CLI {C.describe(cli)} but API {C.describe(api)}"


@pytest.mark.parametrize("kind", C.IMAGE_DAMAGE)
def test_each_bad_image_is_skipped_or_refused_by_name(kind):
    """A folder with one bad file of each kind: the fit succeeds (the file is skipped or decoded) and ``--strict``
    names the file when it is refused."""
    import numpy as np

    name = f"imgs/cat/bad-{kind}{C.IMAGE_SUFFIX.get(kind, '.png')}"
    files = {**C.reference_images(3), name: C.bad_image(kind, np.random.default_rng(0))}
    argv = ["--quiet", "fit", "--train", "{root}/imgs", *C.IMAGE_FIT, "--runs-dir", "{root}/runs", "--name",
            C.RUN_NAME]
    out = check(C.Case("images", kind, files, argv=argv, writes=(f"runs/{C.RUN_NAME}",)), "cli")
    assert out.kind == "result", C.describe(out)
    strict = check(C.Case("images", kind, files, argv=argv + ["--strict"], writes=(f"runs/{C.RUN_NAME}",)), "cli")
    if strict.kind == "error":
        assert f"bad-{kind}" in strict.error


@pytest.mark.parametrize("kind", ["bomb-huge", "bomb-over-limit", "bomb-thin", "bomb-gif"])
def test_decompression_bomb_headers_are_refused_quickly(tmp_path, kind):
    """A header declaring 10^10 pixels (or a 1 x 8*10^7 strip) is refused from the header, in well under a
    second and without allocating the pixels."""
    import resource
    import time

    import numpy as np

    from transferkit.data.images import image_problem

    p = tmp_path / f"bomb{C.IMAGE_SUFFIX.get(kind, '.png')}"
    p.write_bytes(C.bad_image(kind, np.random.default_rng(0)))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    problem = image_problem(str(p))
    assert time.perf_counter() - t0 < 1.0
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024 < 100
    assert problem is not None and "pixels" in problem, problem


def test_failed_fit_leaves_no_run_and_no_partial_folder(tmp_path):
    """The lifecycle check of ``run_case`` itself: a fit that fails on its data writes nothing."""
    case = C.Case("table", "no rows", {"d.csv": b"text,label\n"},
                  argv=["--quiet", "fit", "--train", "{root}/d.csv", *C.TEXT_FIT, "--runs-dir", "{root}/runs",
                        "--name", C.RUN_NAME], writes=(f"runs/{C.RUN_NAME}",))
    out = C.run_case(case, tmp_path)
    assert out.kind == "error" and "has no rows" in out.error
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def test_outcomes_detect_what_they_must(tmp_path):
    """The harness is not vacuous: a traceback, a missing run and a hang are reported as such."""
    import time

    C.API_CALLS["_boom"] = lambda: 1 / 0
    C.API_CALLS["_sleep"] = lambda: time.sleep(5)
    try:
        assert C.run_case(C.Case("arrays", "boom", api=("_boom", ())), tmp_path / "a", via="api").kind == "traceback"
        assert C.run_case(C.Case("arrays", "sleep", api=("_sleep", ())), tmp_path / "b", via="api",
                          timeout=0.2).kind == "hang"
        missing = C.Case("arrays", "no run", api=("_boom", ()), writes=("runs/run",))
        C.API_CALLS["_boom"] = lambda: None
        assert C.run_case(missing, tmp_path / "c", via="api").kind == "half-written"
    finally:
        C.API_CALLS.pop("_boom")
        C.API_CALLS.pop("_sleep")


@pytest.mark.parametrize("output", ["p.csv", None])
def test_predict_of_a_file_name_that_is_not_utf8(runs, output):
    import os

    files = {**C.reference_images(3), os.fsdecode(b"imgs/dog/caf\xe9.png"): C.reference_images(3)["imgs/cat/0.png"]}
    argv = ["--quiet", "predict", "{image_run}", "{root}/imgs"] + (["-o", f"{{root}}/{output}"] if output else [])
    out = check(C.Case("predict", "non-utf8 name", files, argv=argv, outputs=(output,) if output else ()), "cli", runs)
    assert out.kind == "result", C.describe(out)


def test_texts_without_a_two_letter_word_are_a_data_error(tmp_path):
    texts = [f"{chr(97 + j % 26)} {j % 10}" for j in range(20)]
    case = C.Case("arrays", "one-letter words", api=("arrays", (texts, ["a", "b"] * 10, None, "{root}/runs")),
                  writes=(f"runs/{C.RUN_NAME}",))
    check(case, "api")
