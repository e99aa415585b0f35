"""The adapt run directory: model files, metrics, candidates, t-SNE plots and a readable report.md."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..engine.model import TransferModel  # noqa: E402
from .config import AdaptConfig  # noqa: E402
from .selection import criterion_score  # noqa: E402
from .trainer import DomainData, features_and_logits  # noqa: E402


def embed_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (after PCA to at most 50 dimensions) of features [N, D] -> [N, 2]."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(x)


def plot_embeddings(panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], classes: list[Any], path: Path,
                    class_note: str) -> Path:
    """One row per panel (title, 2-D points, domain 0/1, class index): coloured by domain, then by class."""
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 5 * len(panels)), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for row, (title, xy, dom, cls) in enumerate(panels):
        ax = axes[row, 0]
        for d, (name, colour) in enumerate((("source", "tab:blue"), ("target", "tab:red"))):
            m = dom == d
            ax.scatter(xy[m, 0], xy[m, 1], s=5, alpha=0.5, color=colour, label=name)
        ax.set_title(f"{title}: by domain")
        ax.legend(markerscale=3)
        ax = axes[row, 1]
        for k, name in enumerate(classes):
            for d, marker in ((0, "o"), (1, "x")):
                m = (cls == k) & (dom == d)
                if m.any():
                    ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, color=cmap(k % cmap.N), marker=marker,
                               label=str(name) if d == 0 else None)
        ax.set_title(f"{title}: by class (o source, x target{class_note})")
        if len(classes) <= 20:
            ax.legend(markerscale=2, fontsize=7, ncol=2)
        for a in axes[row]:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_selection(candidates: list[dict[str, Any]], criterion: str, path: Path) -> Path | None:
    """Criterion value vs target test accuracy, one point per candidate (how well selection can work)."""
    pts = [(criterion_score(c["scores"], criterion), c["oracle"]["accuracy"]) for c in candidates if c.get("oracle")]
    if criterion == "last" or len(pts) < 2:
        return None
    x, y = np.asarray(pts).T
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(x, y)
    ax.set_xlabel(f"unsupervised criterion '{criterion}' (higher = chosen)")
    ax.set_ylabel("target test accuracy (oracle)")
    ax.set_title("Checkpoints: criterion vs oracle")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _embedding_panels(c: AdaptConfig, data: DomainData, models: list[tuple[str, TransferModel]]):
    n = c.plot_points
    rng = np.random.default_rng(c.seed + 11)
    s_idx = np.sort(rng.permutation(len(data.source))[:n])
    if data.target_test is not None:
        tgt, t_idx, note = data.target_test, np.sort(rng.permutation(len(data.target_test))[:n]), ": true labels"
    else:
        tgt, t_idx, note = data.target, np.sort(rng.permutation(len(data.target))[:n]), ": predicted labels"
    panels = []
    for title, m in models:
        f_s, _ = features_and_logits(m, data.source, s_idx)
        f_t, z_t = features_and_logits(m, tgt, t_idx)
        y_t = data.y_target_test[t_idx] if data.target_test is not None else z_t.argmax(1)
        xy = embed_2d(np.concatenate([f_s, f_t]), c.seed)
        dom = np.r_[np.zeros(len(f_s), int), np.ones(len(f_t), int)]
        panels.append((title, xy, dom, np.r_[data.y_source[s_idx], y_t]))
    return panels, note


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def write_run(directory: Path, c: AdaptConfig, result, data: DomainData, base_model: TransferModel,
              history: list[dict[str, float]], started: float) -> Path:
    """Everything of an adapt run into ``directory`` (the partial folder of `runs.lifecycle.start_run`)."""
    from safetensors.torch import save_model

    from ..config import FitConfig
    from ..runs.store import environment, save_model_files, write_json

    model, m, d = result.model, result.metrics, result.details
    frozen = c.features == "frozen"
    run_name = directory.name.split(".partial")[0].lstrip(".")
    if frozen:
        save_model(model, str(directory / "adapter.safetensors"))
        meta = model.backbone.meta.to_dict()
        write_json(directory / "backbone.json", meta)
        write_json(directory / "labels.json", result.labels)
    else:  # loadable like a fit run: `transferkit evaluate/predict RUN`, `--backbone run:RUN`
        view = FitConfig(backbone=c.backbone_spec, strategy="fine-tune", seed=c.seed, image_size=c.image_size,
                         max_length=c.max_length, training=c.training,
                         text_column=c.text_column, image_column=c.image_column, label_column=c.label_column,
                         train=c.source, name=run_name, runs_dir=c.runs_dir)
        save_model_files(directory, model, view, result.labels)
    (directory / "adapt.yaml").write_text(c.to_yaml(), encoding="utf-8")
    write_json(directory / "metrics.json", {**m, "details": d})
    write_json(directory / "candidates.json", {"method": result.candidates,
                                               "source_only": [{k: v for k, v in x.items()
                                                                if k not in ("state", "test_probs")}
                                                               for x in result.baseline.candidates]})
    write_json(directory / "history.json", {"method": history, "source_only": result.baseline.history})
    plots = []
    if c.plot_points > 0:
        models = [("before (source-only)", base_model)]
        if c.method != "source-only":
            models.append((f"after ({c.method})", model))
        panels, note = _embedding_panels(c, data, models)
        plots.append(plot_embeddings(panels, result.labels["classes"], directory / "embedding.png", note).name)
    sel_plot = plot_selection(result.candidates, c.select, directory / "selection.png")
    lines = [f"# transferkit adapt: {run_name}", "",
             f"- method: `{c.method}` (trade-off {', '.join(f'{w:g}' for w in c.grid)}); backbone `{c.backbone_spec}` "
             f"({'frozen features + trainable MLP bottleneck' if frozen else 'adapted end to end'}); seed {c.seed}",
             f"- data: source {d['sizes']['source_train']} train + {d['sizes']['source_val']} validation "
             f"(`{c.source or 'arrays'}`), target {d['sizes']['target']} unlabelled (`{c.target or 'arrays'}`), "
             f"target test {d['sizes']['target_test'] or 'none'}"
             + (f" (`{c.target_test}`)" if c.target_test else ""),
             f"- training: {c.training.epochs} epochs over the source, batch {c.training.batch_size} per domain, "
             f"lr {c.training.lr:g}, "
             f"{c.checkpoints} checkpoints per training run; time: source-only "
             + ("reused from an earlier call" if d.get("baseline_reused") else f"{d['seconds']['source_only']:.1f} s")
             + f", method {d['seconds']['method']:.1f} s", ""]
    lines += ["## Target results", ""]
    if "adapted" in m:
        lines += [f"Models chosen without target labels (criterion `{c.select}`); the oracle rows peek at the "
                  "target test labels and are shown only to judge the criterion.", "",
                  "| model | target accuracy | target macro-F1 | proxy A-distance (source vs target features) |",
                  "|---|---|---|---|",
                  f"| source-only | {m['source_only']['accuracy']:.4f} | {m['source_only']['macro_f1']:.4f} | "
                  f"{m['a_distance']['before']:.3f} |",
                  f"| {c.method} | {m['adapted']['accuracy']:.4f} | {m['adapted']['macro_f1']:.4f} | "
                  f"{m['a_distance']['after']:.3f} |",
                  f"| source-only, oracle checkpoint | {m['oracle']['source_only']['accuracy']:.4f} | "
                  f"{m['oracle']['source_only']['macro_f1']:.4f} | |",
                  f"| {c.method}, oracle checkpoint | {m['oracle']['adapted']['accuracy']:.4f} | "
                  f"{m['oracle']['adapted']['macro_f1']:.4f} | |", ""]
        delta = m["adapted"]["accuracy"] - m["source_only"]["accuracy"]
        lines += [f"**{c.method} {'beats' if delta > 0 else 'does not beat'} source-only on this target test set "
                  f"({delta:+.4f} accuracy).**", ""]
    else:
        lines += ["No labelled target test data (`--target-test`): no target accuracy can be reported.", "",
                  f"Proxy A-distance source vs target: before {m['a_distance']['before']:.3f}, "
                  f"after {m['a_distance']['after']:.3f}.", ""]
    lines += ["Proxy A-distance = 2 (1 - 2 err) of a logistic-regression domain classifier on held-out features "
              "(0: indistinguishable, 2: separable). Lower after adaptation means aligned features, which helps "
              "only if classes stay aligned too.", ""]
    lines += ["## Selection without target labels", "",
              f"Criterion `{c.select}` chose trade-off {m['selection']['chosen']['trade_off']:g} at step "
              f"{m['selection']['chosen']['step']}"
              + (f"; the oracle would take trade-off {m['selection']['oracle']['trade_off']:g} at step "
                 f"{m['selection']['oracle']['step']}." if m["selection"]["oracle"] else "."), "",
              "| trade-off | step | source val acc | target entropy | DEV risk | target test acc (oracle) |",
              "|---|---|---|---|---|---|"]
    for x in result.candidates:
        s = x["scores"]
        lines.append(f"| {x['trade_off']:g} | {x['step']} | {s['source_val_accuracy']:.4f} | "
                     f"{s['target_entropy']:.4f} | {s['dev_risk']:.4f} | "
                     f"{_fmt((x.get('oracle') or {}).get('accuracy'))} |")
    lines.append("")
    if sel_plot is not None:
        lines += ["![criterion vs oracle](selection.png)", ""]
    if plots:
        lines += ["## Features before and after (t-SNE)", "", "![t-SNE embeddings](embedding.png)", ""]
    load = ("adapter.safetensors holds the bottleneck and head over frozen features (not loadable by "
            "`transferkit predict`)" if frozen else "`transferkit evaluate RUN DATA`, `transferkit predict RUN ...` "
            "and `--backbone run:RUN` work on this run (config.yaml is the fit-compatible view)")
    lines += ["## Reproduce", "", "```", f"transferkit adapt --config {run_name}/adapt.yaml --overwrite", "```",
              "" if c.source else "(data were passed from Python; save them to files and set source/target paths.)",
              "", f"Files: `adapt.yaml`, `metrics.json`, `candidates.json`, `history.json`, `labels.json`, "
              f"`backbone.json`, `adapt.log`, plots; {load}.", ""]
    (directory / "report.md").write_text("\n".join(lines), encoding="utf-8")
    write_json(directory / "run.json", {"status": "complete", "kind": "adapt", "name": run_name, "head": "linear",
                                        "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                                        "seconds": time.time() - started, "seed": c.seed, "method": c.method,
                                        "loadable": not frozen, "lineage": d.get("lineage", []),
                                        "environment": environment()})
    return directory / "report.md"
