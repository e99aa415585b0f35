"""transferkit tune: space errors before any trial, validation objective, shared cache, best.yaml reproduces,
pruning through the engine's epoch listener, a killed tuner's trial FAILs and a re-run continues, two local
workers on SQLite and on a throwaway PostgreSQL cluster."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

optuna = pytest.importorskip("optuna")

from tests.helpers import assert_png, cli  # noqa: E402
from transferkit.config import FitConfig  # noqa: E402
from transferkit.errors import ConfigError  # noqa: E402
from transferkit.features import FeatureCache  # noqa: E402
from transferkit.tuning import parse_space, tune  # noqa: E402

LP = {"backbone": "scratch:cnn", "strategy": "linear-probe", "image_size": 16, "probe_grid": [1.0],
      "num_threads": 1, "val_fraction": 0.25, "test_fraction": 0.25}
# six distinct probe configs (a linear probe reads class_weights and probe_grid, not head or lr)
LP_SPACE = {"probe_grid": {"choices": [[1e-4], [0.1], [1.0]]}, "class_weights": {"choices": [False, True]}}
# a fine-tune of a tiny scratch CNN: lr 3e-3 learns (val macro-F1 ~0.09 after epoch 1, ~0.35 after 2); 1e-6 does not
FT = {**LP, "strategy": "fine-tune", "epochs": 3, "batch_size": 8, "warmup": 0.0, "min_steps": 0}
FT_SPACE = {"lr": {"choices": [3e-3, 1e-6]}}


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, digits) -> Path:
    """120 real digits (12 per class) as 8x8 grayscale PNGs in class folders."""
    from PIL import Image

    X, y = digits
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("tune") / "digits"
    for i in np.concatenate([rng.permutation(np.flatnonzero(y == c))[:12] for c in range(10)]):
        (root / str(y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(X[i] * 16, 0, 255).astype(np.uint8)).save(root / str(y[i]) / f"{i:04d}.png")
    return root


def write_setup(tmp: Path, data: Path, base: dict, space: dict, name: str = "base") -> tuple[Path, Path]:
    cfg, sp = tmp / f"{name}.yaml", tmp / "space.yaml"
    cfg.write_text(yaml.safe_dump({**base, "train": str(data), "runs_dir": str(tmp / "runs")}), encoding="utf-8")
    sp.write_text(yaml.safe_dump(space, sort_keys=False), encoding="utf-8")
    return cfg, sp


def trials_of(study_db: Path, name: str = "base") -> list:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_db}").get_trials(deepcopy=False)


def states(trials) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# -- the space ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space, expected", [
    ({"learning_rate": {"low": 1e-4, "high": 1e-2}}, "Unknown field 'learning_rate'"),
    ({"lr": {"low": 1e-2, "high": 1e-3}}, "must have low < high; got low 0.01, high 0.001"),
    ({"lr": {"low": 0.0, "high": 1e-2, "log": True}}, "log: true, which needs low > 0; got low 0.0"),
    ({"strategy": {"choices": []}}, "'choices' of 'strategy' in space must be a non-empty list"),
    ({"batch_size": {"choices": [16, 16]}}, "repeat 16"),
    ({"epochs": {"low": 1.5, "high": 3}}, "'epochs' in space is an integer setting"),
    ({"strategy": {"low": 1, "high": 2}}, "'strategy' in space is a str setting: give {choices: [...]}"),
    ({"seed": {"low": 0, "high": 9}}, "'seed' in space cannot be searched: it defines the data"),
    ({"lr": {"low": 1e-3, "high": 1e-2, "logg": True}}, "Unknown key 'logg' for 'lr' in space. Did you mean 'log'?"),
    ({"lr": 0.1}, "'lr' in space must be a mapping"),
    ({"lr": {"low": 1e-3}}, "'lr' in space needs 'high'"),
    ({"lr": {"choices": [1e-3], "low": 1e-4}}, "gives both choices and a range"),
    ({}, "must be a non-empty mapping"),
])
def test_malformed_spaces_are_one_line_errors(space, expected):
    with pytest.raises(ConfigError) as e:
        parse_space(space)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_dotted_and_flat_names_and_yaml_numbers():
    s = parse_space({"training.lr": {"low": "1e-4", "high": "1e-2", "log": True}, "epochs": {"low": 1, "high": 4},
                     "probe_grid": {"choices": [[0.1, 1.0], [10.0]]}})
    assert s.names == ["lr", "epochs", "probe_grid"]
    assert [p.kind for p in s.params] == ["float", "int", "categorical"]
    assert s.params[0].low == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as text
    assert s.values({"probe_grid": "[0.1, 1.0]", "epochs": 3}) == {"probe_grid": [0.1, 1.0], "epochs": 3}
    with pytest.raises(ConfigError, match="given twice"):
        parse_space({"lr": {"low": 1e-4, "high": 1e-2}, "training.lr": {"low": 1e-4, "high": 1e-2}})


@pytest.mark.parametrize("space, expected", [
    ({"strategy": {"choices": ["linear-probe", "finetune"]}}, "Did you mean 'fine-tune'"),
    ({"freeze": {"low": -1, "high": 2}}, "'freeze' parameter of FitConfig must be an integer >= 0"),
    ({"backbone": {"choices": ["scratch:cnn", "efficientnet_lite0"]}}, "source prefix"),
])
def test_values_the_fit_config_refuses_fail_before_any_trial(tmp_path, digit_folder, space, expected, capsys):
    cfg, sp = write_setup(tmp_path, digit_folder, LP, space)
    assert cli("--quiet", "tune", "--config", cfg, "--space", sp, "--trials", 2) == 2
    err = capsys.readouterr().err
    assert expected in err and "refused by the base config" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no study, no trial


def test_bad_settings_exit_2(tmp_path, digit_folder, capsys):
    cfg, sp = write_setup(tmp_path, digit_folder, LP, LP_SPACE)
    assert cli("--quiet", "tune", "--config", cfg, "--space", sp, "--metric", "f1") == 2
    assert "Unknown classification metric 'f1'" in capsys.readouterr().err
    assert cli("--quiet", "tune", "--config", cfg, "--space", sp, "--pruner", "asha") == 2
    assert "'pruner' parameter of TuneConfig must be hyperband | median | none" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="give the data as paths"):
        from transferkit.data import from_arrays

        tune(LP, LP_SPACE, train=from_arrays(np.zeros((20, 8, 8)), np.arange(20) % 2), workers=2)


# -- objective, cache, results, reproduction -----------------------------------------------------------------------
def test_objective_is_the_validation_metric_and_trials_share_one_cache(tmp_path, digit_folder):
    from transferkit.pipeline import fit, load_splits

    base = FitConfig.from_dict({**LP, "train": str(digit_folder), "runs_dir": str(tmp_path / "runs")})
    cache = FeatureCache(tmp_path / "cache")
    r = tune(base, LP_SPACE, trials=5, sampler="random", cache=cache, progress=False, study="lp")
    assert r.counts["complete"] == 5
    assert cache.misses == 2, "train and validation features extracted once, never the test split"
    assert cache.hits == 3 * 5 - 2
    splits = load_splits(base)
    values = set()
    fitted = [t for t in trials_of(r.out_dir / "study.db", "lp") if t.state.name == "COMPLETE"]
    assert len(fitted) == 5 and len({json.dumps(t.params, sort_keys=True) for t in fitted}) == 5, "no config twice"
    for t in fitted:
        cfg = base.updated(**parse_space(LP_SPACE).values(t.params))
        again = fit(cfg, train=splits.train, val=splits.val, test=splits.test, progress=False, save=False,
                    cache=FeatureCache(tmp_path / "cache"))
        assert t.value == pytest.approx(again.val_metrics["macro_f1"], abs=1e-12)
        values.add(round(t.value, 6))
    assert len(values) >= 2, "the space changes the validation metric"
    assert r.best_value == max(t.value for t in fitted)
    assert not (tmp_path / "runs" / "lp").exists() and sorted(os.listdir(tmp_path / "runs")) == ["tune"], \
        "trials write no run"
    # the same study with another space is refused, not mixed
    with pytest.raises(ConfigError, match="Study 'lp' was started with another space"):
        tune(base, {"head": {"choices": ["linear", "mlp"]}}, trials=6, progress=False, study="lp")


# -- a conditional space: each strategy draws only what it reads; repeated configs are not refitted -------------
def test_a_trial_draws_only_the_settings_its_strategy_reads():
    from optuna.trial import FixedTrial

    space = parse_space({"strategy": {"choices": ["linear-probe", "fine-tune", "classical"]},
                         "lr": {"low": 1e-5, "high": 1e-2, "log": True}, "epochs": {"low": 1, "high": 3},
                         "probe_grid": {"choices": [[0.1], [1.0, 10.0]]}, "head": {"choices": ["linear", "mlp"]},
                         "class_weights": {"choices": [False, True]}})
    grid = space.params[3].labels[1]
    # FixedTrial raises for a parameter it was not given: so each of these also checks what is *not* drawn
    probe = space.suggest(FixedTrial({"strategy": "linear-probe", "probe_grid": grid, "class_weights": True}),
                          "fine-tune")
    assert probe == {"strategy": "linear-probe", "probe_grid": [1.0, 10.0], "class_weights": True}
    ft = space.suggest(FixedTrial({"strategy": "fine-tune", "lr": 1e-3, "epochs": 2, "head": "mlp",
                                   "class_weights": False}), "linear-probe")
    assert ft == {"strategy": "fine-tune", "lr": 1e-3, "epochs": 2, "head": "mlp", "class_weights": False}
    assert space.suggest(FixedTrial({"strategy": "classical", "class_weights": False}), "fine-tune") == \
        {"strategy": "classical", "class_weights": False}
    # without a searched strategy, the base config's strategy decides
    no_strategy = parse_space({"lr": {"low": 1e-5, "high": 1e-2}, "probe_grid": {"choices": [[0.1], [1.0]]}})
    assert no_strategy.suggest(FixedTrial({"probe_grid": "[0.1]"}), "linear-probe") == {"probe_grid": [0.1]}
    assert no_strategy.suggest(FixedTrial({"lr": 1e-3}), "fine-tune") == {"lr": 1e-3}
    # auto chooses among strategies: it may read anything
    assert no_strategy.suggest(FixedTrial({"lr": 1e-3, "probe_grid": "[1.0]"}), "auto") == \
        {"lr": 1e-3, "probe_grid": [1.0]}


def test_a_repeated_config_is_skipped_and_an_exhausted_space_ends_the_search(tmp_path, digit_folder, monkeypatch,
                                                                           capsys):
    from transferkit.tuning import worker

    monkeypatch.setattr(worker, "MAX_REPEATS_IN_A_ROW", 15)
    base = {**LP, "train": str(digit_folder), "runs_dir": str(tmp_path / "runs")}
    cache = FeatureCache(tmp_path / "cache")
    # two distinct linear-probe configs (lr and epochs are not read by a probe, so they are not drawn)
    space = {"probe_grid": {"choices": [[0.1], [1.0]]}, "lr": {"low": 1e-4, "high": 1e-2, "log": True},
             "epochs": {"low": 1, "high": 4}}
    r = tune(base, space, trials=10, sampler="random", cache=cache, progress=False, study="few")
    assert r.counts["complete"] == 2 and r.counts["fail"] == 0
    assert r.counts["repeated"] >= 15
    assert cache.misses == 2 and cache.hits == 3 * 2 - 2, "two fits (3 lookups each: train, val, val as test)"
    fitted = [t for t in trials_of(r.out_dir / "study.db", "few") if t.state.name == "COMPLETE"]
    assert sorted(t.params["probe_grid"] for t in fitted) == ["[0.1]", "[1.0]"]
    assert all(set(t.params) == {"probe_grid"} for t in fitted)
    assert "nothing new left" in capsys.readouterr().err
    report = (r.out_dir / "report.md").read_text()
    assert f"{r.counts['repeated']} proposals repeated a config already fitted" in report
    assert len((r.out_dir / "trials.csv").read_text().splitlines()) == 1 + 2, "skipped proposals are not rows"


def test_optuna_s_failure_warnings_for_skipped_repeats_are_dropped():
    import logging

    from transferkit.tuning.objective import _QuietRepeats

    f = _QuietRepeats()

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, msg, None, None)

    assert not f.filter(rec("Trial 7 failed with parameters: {'x': 1} because of the following error: "
                            "RepeatedConfig('the config of trial #3 (already fitted)')."))
    assert not f.filter(rec("Trial 7 failed with value None."))
    assert f.filter(rec("Trial 8 failed with parameters: {'x': 2} because of the following error: "
                        "DataError('bad')."))
    assert f.filter(rec("Trial 8 failed with value None."))
    assert f.filter(rec("Trial 9 finished with value: 0.5"))


def test_cli_writes_results_and_best_yaml_reproduces_the_best_trial(tmp_path, digit_folder, capsys):
    cfg, sp = write_setup(tmp_path, digit_folder, LP, LP_SPACE)
    assert cli("--quiet", "tune", "--config", cfg, "--space", sp, "--trials", 5, "--sampler", "random",
               "--refit") == 0
    out = tmp_path / "runs" / "tune" / "base"
    for f in ("study.db", "best.yaml", "trials.csv", "report.md"):
        assert (out / f).is_file(), f
    assert_png(out / "history.png")
    assert_png(out / "importances.png")
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and rows[0].startswith("number,state,value,param_probe_grid,param_class_weights")
    report = (out / "report.md").read_text()
    assert "validation macro_f1" in report and "| default (base config) |" in report and "![Optimisation" in report
    best = optuna.load_study(study_name="base", storage=f"sqlite:///{out / 'study.db'}").best_trial
    assert f"Trial #{best.number}: validation macro_f1 = {best.value:.4f}" in report
    # the refit of best.yaml by `transferkit fit` reproduces the best trial's validation metric
    assert cli("--quiet", "fit", "--config", out / "best.yaml", "--name", "repro") == 0
    metrics = json.loads((tmp_path / "runs" / "repro" / "metrics.json").read_text())
    assert metrics["val"]["macro_f1"] == pytest.approx(best.value, abs=1e-12)
    refit = json.loads((tmp_path / "runs" / "tune-base-best" / "metrics.json").read_text())
    assert refit["test"]["macro_f1"] == pytest.approx(metrics["test"]["macro_f1"], abs=1e-12)
    assert (tmp_path / "runs" / "tune-base-default" / "metrics.json").is_file()
    assert "refit test macro_f1: best" in capsys.readouterr().out


def test_a_timeout_before_any_trial_leaves_a_report_without_best(tmp_path, digit_folder):
    base = {**LP, "train": str(digit_folder), "runs_dir": str(tmp_path / "runs")}
    r = tune(base, LP_SPACE, trials=3, timeout=1e-6, progress=False)
    assert r.counts["finished"] == 0 and r.best_config is None
    assert "No trial has completed" in (r.out_dir / "report.md").read_text()
    assert not (r.out_dir / "best.yaml").exists()


# -- pruning through the engine ------------------------------------------------------------------------------------
def test_epoch_listener_sees_each_epochs_validation_score(digit_folder):
    from transferkit.engine.callbacks import epoch_listener
    from transferkit.pipeline import fit

    seen: list[float] = []
    cfg = FitConfig.from_dict({**FT, "train": str(digit_folder), "epochs": 2, "lr": 3e-3})
    with epoch_listener(seen.append):
        r = fit(cfg, progress=False, save=False)
    assert len(seen) == 2  # the kept (best) epoch's score is the fitted model's validation macro-F1
    assert seen[r.details["best_epoch"] - 1] == pytest.approx(r.val_metrics["macro_f1"], abs=1e-9)

    class Stop(Exception):
        pass

    def stop(score: float) -> None:
        raise Stop

    with pytest.raises(Stop), epoch_listener(stop):
        fit(cfg, progress=False, save=False)
    fit(cfg, progress=False, save=False)  # outside the block: no listener left behind


def test_pruning_reports_in_the_study_direction_and_never_at_the_last_epoch():
    from transferkit.tuning.objective import EpochPruning

    class Trial:  # the pruner always says "prune"
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    t = Trial()
    EpochPruning(t, "minimize", last_epoch=1)(0.25)  # the last epoch: reported, not pruned (nothing to save)
    assert t.reported == [(1, -0.25)]  # the engine's higher-is-better score, negated for a minimising study
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1"):
        EpochPruning(Trial(), "maximize", last_epoch=3)(0.25)


def test_median_pruner_prunes_the_clearly_bad_region(tmp_path, digit_folder):
    base = {**FT, "train": str(digit_folder), "runs_dir": str(tmp_path / "runs")}
    db = tmp_path / "runs" / "tune" / "tune" / "study.db"
    db.parent.mkdir(parents=True)
    first = optuna.create_study(study_name="tune", storage=f"sqlite:///{db}", direction="maximize")
    for lr in (3e-3, 1e-6, 1e-6):  # the first trials, in this order: a good one, then the bad region
        first.enqueue_trial({"lr": lr})
    r = tune(base, FT_SPACE, trials=3, pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
             progress=False)
    trials = trials_of(r.out_dir / "study.db", "tune")
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert len(pruned) == 2, f"not pruned: {[(t.params, t.intermediate_values) for t in trials]}"
    assert all(t.params["lr"] == 1e-6 for t in pruned), "only the hopeless learning rate is pruned"
    assert all(t.user_attrs["epochs_run"] < 3 and t.intermediate_values for t in pruned)
    assert any(t.state.name == "COMPLETE" and t.params["lr"] == 3e-3 for t in trials)
    assert r.best_params == {"lr": 3e-3}
    assert sorted(os.listdir(tmp_path / "runs")) == ["tune"], "a pruned trial leaves no run"
    assert "pruned" in (r.out_dir / "report.md").read_text()


# -- a killed tuner; workers ---------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


def test_a_killed_tuner_leaves_a_failed_trial_and_a_rerun_continues(tmp_path, digit_folder):
    cfg, sp = write_setup(tmp_path, digit_folder, FT, {"lr": {"low": 1e-3, "high": 5e-3, "log": True}})
    argv = ["--quiet", "tune", "--config", str(cfg), "--space", str(sp), "--trials", "4", "--heartbeat", "1",
            "--sampler", "random"]
    proc = subprocess.Popen([sys.executable, "-m", "transferkit.cli.main", *argv], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = tmp_path / "runs" / "tune" / "base" / "study.db"
    deadline, running = time.monotonic() + 90, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    ts = trials_of(db)
                except Exception:  # noqa: BLE001 - the study is being created
                    ts = []
                if any(t.state.name == "COMPLETE" for t in ts) and any(t.state.name == "RUNNING" for t in ts):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    running = [t.number for t in trials_of(db) if t.state.name == "RUNNING"]
    assert running, "the tuner was killed during a trial"
    time.sleep(3.5)  # past the heartbeat's grace period (3 x 1 s)
    assert cli(*argv) == 0
    trials = trials_of(db)
    by_number = {t.number: t for t in trials}
    assert len(by_number) == len(trials)
    assert all(by_number[n].state.name == "FAIL" for n in running), "the killed trial is FAIL, not RUNNING"
    assert states(trials).get("COMPLETE", 0) + states(trials).get("PRUNED", 0) == 4
    assert "RUNNING" not in states(trials)


def test_two_workers_share_a_sqlite_study(tmp_path, digit_folder):
    cfg, sp = write_setup(tmp_path, digit_folder, LP, LP_SPACE)
    assert cli("--quiet", "tune", "--config", cfg, "--space", sp, "--trials", 6, "--workers", 2) == 0
    out = tmp_path / "runs" / "tune" / "base"
    trials = trials_of(out / "study.db")
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 6 and len({json.dumps(t.params, sort_keys=True) for t in done}) == 6, \
        "the space's six configs, each fitted once"
    assert all("repeats" in t.user_attrs for t in trials if t.state.name != "COMPLETE"), "only skipped repeats"
    ran = [int(line.split("ran ")[1].split()[0]) for i in (1, 2)
           for line in (out / "workers" / f"worker-{i}.log").read_text().splitlines() if "ran " in line]
    assert len(ran) == 2 and sum(ran) == 6, ran
    assert (out / "best.yaml").is_file()


@pytest.fixture
def postgres(tmp_path):
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port; yields its URL."""
    import socket

    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL's initdb / pg_ctl are not on PATH")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver psycopg2-binary is not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user, in a dir it can reach
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
        root = Path(tempfile.mkdtemp(prefix="tk-pg-"))
        os.chown(root, pw.pw_uid, pw.pw_gid)
    else:
        root = tmp_path / "pg"
        root.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *a: subprocess.run([*as_user, *a], check=True, capture_output=True, timeout=60)  # noqa: E731
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], check=False,
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, digit_folder, postgres):
    cfg, sp = write_setup(tmp_path, digit_folder, LP, LP_SPACE)
    assert cli("--quiet", "tune", "--config", cfg, "--space", sp, "--trials", 5, "--workers", 2,
               "--storage", postgres, "--study", "pg") == 0
    from transferkit.tuning.storage import with_driver

    study = optuna.load_study(study_name="pg", storage=with_driver(postgres))  # psycopg2 under SQLAlchemy 2.1
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 5 and len({json.dumps(t.params, sort_keys=True) for t in done}) == 5
    assert all("repeats" in t.user_attrs for t in study.trials if t.state.name != "COMPLETE")
    out = tmp_path / "runs" / "tune" / "pg"
    assert not (out / "study.db").exists() and (out / "best.yaml").is_file()
    assert "postgresql://postgres@127.0.0.1" in (out / "report.md").read_text()
