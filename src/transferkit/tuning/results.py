"""What a search leaves in ``runs/tune/NAME/``: ``best.yaml`` (a FitConfig that ``transferkit fit --config``
reproduces), ``trials.csv``, ``report.md`` with the trial table, and the optimisation-history and
parameter-importance plots."""
from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

from ..config import FitConfig
from .search import optuna_module
from .space import SearchSpace
from .storage import is_repeat

MIN_TRIALS_FOR_IMPORTANCE = 4


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, tuple)) else str(v)


def trial_rows(study: Any, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per fitted trial (proposals skipped as repeats are left out): number, state, value, the config
    values of its parameters, epochs, seconds, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if is_repeat(t):  # never fitted: counted in the report, not a row
            continue
        params = space.values(t.params)
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **{f"param_{p}": params.get(p) for p in space.names},
                     "epochs_run": t.user_attrs.get("epochs_run"), "epochs_planned": t.user_attrs.get("epochs_planned"),
                     "seconds": t.user_attrs.get("seconds"), "cpu_seconds": t.user_attrs.get("cpu_seconds"),
                     "rss_mb": t.user_attrs.get("rss_mb"), "peak_rss_mb": t.user_attrs.get("peak_rss_mb"),
                     "error": t.user_attrs.get("error", "")})
    return rows


def best_config(study: Any, space: SearchSpace, base: FitConfig) -> tuple[Any, FitConfig] | None:
    """(best trial, base config with its parameters) or None when no trial completed."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        return None
    best = study.best_trial
    return best, base.updated(**space.values(best.params))


def write_trials_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0]) if rows else ["number", "state", "value"]
    lines: list[list[str]] = [cols]
    for r in rows:
        lines.append(["" if r[c] is None else (json.dumps(r[c]) if isinstance(r[c], (list, tuple)) else str(r[c]))
                      for c in cols])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    write_text_atomic(path, buf.getvalue())


def plots(study: Any, space: SearchSpace, out_dir: Path) -> dict[str, str]:
    """``history.png`` and ``importances.png`` where they can be drawn; else the reason, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optuna = optuna_module()
    vis = optuna.visualization.matplotlib
    n_done = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    out: dict[str, str] = {}
    jobs = {"history.png": (vis.plot_optimization_history, n_done >= 1, "no trial completed yet"),
            "importances.png": (lambda st: vis.plot_param_importances(  # fANOVA: 32 seeded trees, not 64
                                    st, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0)),
                                len(space.params) >= 2 and n_done >= MIN_TRIALS_FOR_IMPORTANCE,
                                f"needs >= 2 searched parameters and >= {MIN_TRIALS_FOR_IMPORTANCE} completed "
                                f"trials (have {len(space.params)} and {n_done})")}
    for name, (draw, possible, why) in jobs.items():
        if not possible:
            out[name] = why
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(out_dir / name, dpi=100)
            plt.close(fig)
            out[name] = "ok"
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. every completed trial has one value
            plt.close("all")
            out[name] = f"not drawn: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return out


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]], space: SearchSpace,
             drawn: dict[str, str]) -> str:
    s = summary
    c = s["counts"]
    lines = [f"# Hyper-parameter search `{s['study']}`", "",
             f"Study `{s['study']}` in `{s['storage']}`: sampler {s['sampler']}, pruner {s['pruner']}; objective: "
             f"**validation {s['metric']}** ({s['direction']}). {s['trials']} finished trials requested"
             + (f" (or {s['timeout']:g} s)" if s.get("timeout") else "") + ": "
             f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
             + (f", {c['running']} still running" if c["running"] else "") + "."
             + (f" {c['repeated']} proposals repeated a config already fitted (a strategy's unread settings are not "
                "drawn, so e.g. probe trials differ only in probe settings) and were skipped without fitting."
                if c.get("repeated") else ""), "",
             f"Every trial is fitted on the same splits ({s['data']}); no trial evaluates the test split. Pruning "
             "sees each epoch's validation score (macro-F1, or minus RMSE for regression) and stops a trial at "
             "an epoch end; pruned and failed trials write no run.", ""]
    best = s.get("best")
    if best:
        lines += ["## Best trial", "", f"Trial #{best['number']}: validation {s['metric']} = {best['value']:.4f}.", "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in best["params"].items()]
        lines += ["", f"`best.yaml` holds the base config with these values; `transferkit fit --config "
                      f"{s['best_yaml']}` reproduces the trial" + ("" if s.get("data_in_config") else
                                                                    " (add --train PATH: the data were given in memory)")
                  + ".", ""]
    else:
        lines += ["No trial has completed: no best.yaml yet.", ""]
    refit = s.get("refit")
    if refit:
        m = s["metric"]
        lines += ["## Refit: best vs the base config", "", f"| config | validation {m} | test {m} | run |",
                  "|---|---|---|---|"]
        for side in ("best", "default"):
            r = refit[side]
            lines.append(f"| {side} ({r['what']}) | {r['val']:.4f} | {r['test']:.4f} | `{r['run']}` |")
        lines += ["", "The test split is used here only, once per config.", ""]
    lines += ["## Search space", "", "| parameter | range |", "|---|---|"]
    lines += [f"| {p.name} | {p.describe()} |" for p in space.params]
    lines += ["", "## Trials", "",
              "| # | state | value | " + " | ".join(space.names) + " | epochs run | seconds |",
              "|---|---|---|" + "---|" * len(space.names) + "---|---|"]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        if r["state"] == "PRUNED" and value:
            value = f"({value})"
        epochs = "" if r["epochs_run"] is None else str(r["epochs_run"])
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(f"| {r['number']} | {r['state'].lower()} | {value} | "
                     + " | ".join(_fmt(r[f"param_{p}"]) for p in space.names) + f" | {epochs} | {secs} |")
    lines += ["", "(x): a pruned trial's last epoch score (its intermediate value), not a finished trial's metric.",
              "", "## Plots", ""]
    for name, title in (("history.png", "Optimisation history"), ("importances.png", "Parameter importances")):
        lines.append(f"![{title}]({name})" if drawn.get(name) == "ok" else f"{title}: {drawn.get(name)}.")
        lines.append("")
    return "\n".join(lines)


def write_results(study: Any, space: SearchSpace, base: FitConfig, out_dir: Path,
                  summary: dict[str, Any]) -> dict[str, Any]:
    """Write every result file; returns the summary with ``best`` (number, value, params) and the file paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study, space)
    write_trials_csv(out_dir / "trials.csv", rows)
    found = best_config(study, space, base)
    summary = {**summary, "files": {"trials": str(out_dir / "trials.csv"), "report": str(out_dir / "report.md")}}
    if found is not None:
        trial, cfg = found
        write_text_atomic(out_dir / "best.yaml", cfg.to_yaml())
        summary["best"] = {"number": trial.number, "value": float(trial.value), "params": space.values(trial.params)}
        summary["best_yaml"] = summary["files"]["best"] = str(out_dir / "best.yaml")
    drawn = plots(study, space, out_dir)
    summary["plots"] = drawn
    write_text_atomic(out_dir / "report.md", markdown(summary, rows, space, drawn))
    return summary
