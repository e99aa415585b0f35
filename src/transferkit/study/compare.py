"""``transferkit compare``: on the same splits, classical vs scratch vs linear-probe vs fine-tune vs lp-ft,
across label budgets and seeds; resumable (one JSON per finished cell), features cached."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..config import FitConfig
from ..data import Columns, Dataset, LabelMap, load_path, per_class_budget, stratified_split
from ..errors import ConfigError
from ..evaluation.metrics import classification_metrics, headline, regression_metrics, softmax
from ..runs.store import write_json
from ..strategies import FeatureCache

BASELINES = ("classical", "scratch")
TRANSFER = ("linear-probe", "fine-tune", "lp-ft", "hybrid")
TEXT_ONLY = ("hybrid",)  # TF-IDF + frozen embeddings


@dataclass
class StudyConfig:
    """What to compare. ``budgets``: ints = labelled examples per class, floats in (0,1) = fraction, 'all'."""

    base: FitConfig = field(default_factory=FitConfig)
    strategies: list[str] = field(default_factory=lambda: ["classical", "scratch", "linear-probe", "fine-tune"])
    backbones: list[str] = field(default_factory=lambda: ["packaged:efficientnet_lite0"])
    budgets: list[Any] = field(default_factory=lambda: [5, 10, "all"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    scratch_backbone: str | None = None
    out: str = "runs/compare"

    def validate(self) -> StudyConfig:
        for s in self.strategies:
            if s not in BASELINES + TRANSFER:
                from ..errors import suggest

                raise ConfigError(f"Unknown study strategy '{s}'.{suggest(s, BASELINES + TRANSFER)} "
                                  f"Choose from {', '.join(BASELINES + TRANSFER)}.")
        for b in self.budgets:
            ok = b == "all" or (isinstance(b, int) and b >= 1) or (isinstance(b, float) and 0 < b < 1)
            if not ok:
                raise ConfigError(f"Budget {b!r} must be an integer >= 1 (per class), a fraction in (0, 1) or 'all'.")
        if not self.seeds:
            raise ConfigError("Give at least one seed.")
        return self


def parse_budget(v: str) -> Any:
    v = v.strip()
    if v == "all":
        return "all"
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            raise ConfigError(f"Budget {v!r} must be an integer, a fraction or 'all'.") from None


def _budget_indices(y: np.ndarray, budget: Any, seed: int, task: str) -> np.ndarray:
    if budget == "all":
        return np.arange(len(y))
    if isinstance(budget, float):
        rng = np.random.default_rng(seed)
        n = max(2, int(round(budget * len(y))))
        return np.sort(rng.permutation(len(y))[:n])
    if task == "regression":
        raise ConfigError("Per-class budgets need classification; use fractions (e.g. 0.1) for regression.")
    return per_class_budget(y, budget, seed)


def _series(strategy: str, backbone: str | None) -> str:
    return strategy if strategy in BASELINES else f"{strategy} ({backbone})"


class Study:
    def __init__(self, cfg: StudyConfig, data: Dataset | None = None, progress: bool = True) -> None:
        self.cfg = cfg.validate()
        self.progress = progress
        b = cfg.base
        if data is None and not b.train:
            raise ConfigError("The study needs labelled data: pass --train DATA (an image folder or a table), "
                              "or data= in the Python API.")
        self.data = data if data is not None else load_path(
            b.train, Columns(b.text_column, b.image_column, b.label_column, b.id_column), b.strict, task=b.task)
        self.out = Path(cfg.out)
        (self.out / "cells").mkdir(parents=True, exist_ok=True)
        for s in cfg.strategies:
            if s in TEXT_ONLY and self.data.modality != "text":
                raise ConfigError(f"Study strategy '{s}' combines TF-IDF with embeddings and needs text data; "
                                  f"'{self.data.origin or 'the data'}' holds {self.data.modality}s. Remove it.")
        self._check_settings()
        self.cache = FeatureCache()
        self._features: dict[str, np.ndarray] = {}

    def settings(self) -> dict[str, Any]:
        """What a finished cell depends on (besides its own strategy/backbone/budget/seed)."""
        return {"base": self.cfg.base.to_dict() | {"train": None, "name": None, "runs_dir": None},
                "scratch_backbone": self.cfg.scratch_backbone, "data": self.data.content_hash(),
                "n": len(self.data)}

    def _check_settings(self) -> None:
        path = self.out / "study.json"
        now = json.loads(json.dumps(self.settings(), default=str))
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            # keys added to FitConfig after the study started count as their defaults
            defaults = json.loads(json.dumps(FitConfig().to_dict(), default=str))
            old["base"] = {**{k: v for k, v in defaults.items() if k not in old["base"]}, **old["base"]}
            old["base"] = {k: v for k, v in old["base"].items() if k in now["base"]}
            if old != now:
                diff = sorted(k for k in set(old["base"]) | set(now["base"])
                              if old["base"].get(k) != now["base"].get(k))
                what = ", ".join(diff) or ("data" if old["data"] != now["data"] else "scratch backbone")
                raise ConfigError(f"Study folder '{self.out}' holds results made with other settings ({what}). "
                                  "Use a new --out, or delete the folder to start over.")
        else:
            write_json(path, now)

    # -- one cell -------------------------------------------------------------------------------------
    def _evaluate(self, outputs: np.ndarray, y: np.ndarray, labels: dict[str, Any]) -> dict[str, Any]:
        if labels["task"] == "regression":
            return regression_metrics(y * labels["target_std"] + labels["target_mean"],
                                      outputs[:, 0] * labels["target_std"] + labels["target_mean"])
        return classification_metrics(y, softmax(outputs), labels["classes"])

    def _probe_features(self, backbone_spec: str, split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Frozen features of every example, extracted once per backbone and shared by all seeds' splits."""
        if backbone_spec not in self._features:
            from ..backbones import create_backbone
            from ..engine.inputs import Inputs

            b = self.cfg.base
            bb = create_backbone(backbone_spec, image_size=b.image_size, max_length=b.max_length)
            self._features[backbone_spec] = self.cache.get_or_compute(
                bb, Inputs(self.data, bb), max(b.batch_size, 64), f"extract {backbone_spec}", progress=self.progress)
        feats = self._features[backbone_spec]
        return {name: feats[i] for name, i in split.items()}

    def run_cell(self, strategy: str, backbone: str | None, budget: Any, seed: int, parts: dict[str, Dataset],
                 labels: dict[str, Any], ys: dict[str, np.ndarray],
                 split: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        from ..pipeline import fit
        from ..strategies.classical import fit_classical
        from ..strategies.linear_probe import fit_probe

        b = self.cfg.base
        idx = _budget_indices(parts["pool"].y, budget, seed, b.task)
        train, ytr = parts["pool"].subset(idx), ys["pool"][idx]
        n_out = len(labels["classes"]) if "classes" in labels else 1
        t0 = time.perf_counter()
        if strategy == "classical":
            m = fit_classical(train, ytr, parts["val"], ys["val"], b.task, n_out, seed)
            out = m.outputs(parts["test"])
        elif strategy == "linear-probe":
            f = self._probe_features(backbone, split if split is not None else self._split_indices(seed))
            coef, icpt, scaler, _ = fit_probe(f["pool"][idx], ytr, f["val"], ys["val"], b.task, b.probe_grid, n_out,
                                              b.class_weights, seed)
            out = scaler.transform(f["test"]) @ coef.T + icpt
        elif strategy == "hybrid":
            from ..strategies.hybrid import fit_hybrid

            f = self._probe_features(backbone, split if split is not None else self._split_indices(seed))
            m = fit_hybrid(train, f["pool"][idx], ytr, parts["val"], f["val"], ys["val"], b.task, n_out, seed,
                           b.class_weights)
            out = m.outputs(parts["test"], f["test"])
        else:
            spec = backbone
            if strategy == "scratch":
                spec = self.cfg.scratch_backbone or ("scratch:cnn" if train.modality == "image"
                                                     else "scratch:transformer")
            cfg = replace(b, backbone=spec, strategy="fine-tune" if strategy == "scratch" else strategy, seed=seed)
            r = fit(cfg, train=train, val=parts["val"], test=parts["test"], progress=False, save=False,
                    cache=self.cache)
            out = None
            metrics = r.metrics
        if out is not None:
            metrics = self._evaluate(out, ys["test"], labels)
        name, value = headline(metrics, b.task)
        return {"strategy": strategy, "backbone": backbone if strategy in TRANSFER else None,
                "series": _series(strategy, backbone), "budget": budget, "seed": seed, "n_train": int(len(idx)),
                "metric": name, "value": float(value), "accuracy": metrics.get("accuracy"),
                "seconds": time.perf_counter() - t0}

    def _split_indices(self, seed: int) -> dict[str, np.ndarray]:
        b = self.cfg.base
        pool_i, val_i, test_i = stratified_split(self.data.y, (b.val_fraction, b.test_fraction), seed,
                                                 b.task == "classification")
        return {"pool": pool_i, "val": val_i, "test": test_i}

    # -- the grid -------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, str | None]]:
        cells = []
        for s in self.cfg.strategies:
            if s in BASELINES:
                cells.append((s, None))
            else:
                cells += [(s, bb) for bb in self.cfg.backbones]
        return cells

    def run(self) -> dict[str, Any]:
        from ..pipeline import encode_targets, Splits

        b = self.cfg.base
        plan = self.plan()
        total = len(plan) * len(self.cfg.budgets) * len(self.cfg.seeds)
        results = []
        with tqdm(total=total, desc="compare", unit="cell", disable=not self.progress) as bar:
            for seed in self.cfg.seeds:
                split = self._split_indices(seed)
                parts = {name: self.data.subset(i) for name, i in split.items()}
                labels, enc = encode_targets(b, Splits(parts["pool"], parts["val"], parts["test"]))
                ys = dict(zip(("pool", "val", "test"), enc))
                for budget in self.cfg.budgets:
                    for strategy, backbone in plan:
                        key = f"{strategy}__{backbone}__{budget}__{seed}".replace("/", "_").replace(":", "-")
                        path = self.out / "cells" / f"{key}.json"
                        if path.exists():
                            results.append(json.loads(path.read_text(encoding="utf-8")))
                        else:
                            bar.set_postfix_str(f"{_series(strategy, backbone)} k={budget} seed={seed}")
                            cell = self.run_cell(strategy, backbone, budget, seed, parts, labels, ys, split)
                            write_json(path, cell)
                            results.append(cell)
                        bar.update(1)
        from .report import summarise, write_study_report

        summary = summarise(results, self.cfg)
        write_study_report(self.out, summary, self.cfg)
        return summary


def compare(cfg: StudyConfig, data: Dataset | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the data-efficiency study and write ``report.md``, ``curve.png``, ``summary.json``."""
    return Study(cfg, data, progress).run()
