"""``transferkit compare``: on the same splits, classical vs scratch vs the transfer strategies (linear-probe,
fine-tune, lp-ft, hybrid, ...), across label budgets and seeds; resumable (one JSON per finished cell), features
cached. Every cell is one ``fit`` of a registered strategy (:mod:`.columns` says which, on which backbone)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..backbones.base import Backbone
from ..config import FitConfig, flat_keys
from ..data import Columns, Dataset, load_path, per_class_budget, stratified_split
from ..errors import ConfigError
from ..evaluation.metrics import headline
from ..features import FeatureCache, Inputs
from ..runs.store import write_json
from ..strategies import traits
from .columns import CANDIDATE, DEFAULT_SCRATCH, OWN, column, default_columns, series_name


@dataclass
class StudyConfig:
    """What to compare. ``strategies``: study columns (registered strategies, or ``scratch``; None: every one that
    runs on the data, see :func:`.columns.default_columns`). ``budgets``: ints = labelled examples per class,
    floats in (0,1) = fraction, 'all'."""

    base: FitConfig = field(default_factory=FitConfig)
    strategies: list[str] | None = None
    backbones: list[str] = field(default_factory=lambda: ["packaged:efficientnet_lite0"])
    budgets: list[Any] = field(default_factory=lambda: [5, 10, "all"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    scratch_backbone: str | None = None
    out: str = "runs/compare"

    def validate(self) -> StudyConfig:
        for s in self.strategies or []:
            column(s)
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


class SharedFeatures(FeatureCache):
    """A feature cache for one cell: the frozen features of the cell's parts (train / val / test, subsets of the
    study's data) are rows of the study's single extraction of the whole data (``full(spec)``), so every budget
    and seed reads the same feature values; anything else goes to the study's on-disk ``cache``."""

    def __init__(self, full: Callable[[str], np.ndarray], cache: FeatureCache,
                 parts: list[tuple[Dataset, np.ndarray]]) -> None:
        super().__init__(cache.root, cache.enabled, cache.engine)
        self.full = full
        self.cache = cache
        self.rows = {ds.content_hash(): np.asarray(rows) for ds, rows in parts}

    def get_or_compute(self, backbone: Backbone, inputs: Inputs, batch_size: int = 64, desc: str = "features",
                       source_logits: bool = False, progress: bool = True, engine: str | None = None) -> np.ndarray:
        rows = None if source_logits else self.rows.get(inputs.ds.content_hash())
        if rows is None:
            return self.cache.get_or_compute(backbone, inputs, batch_size, desc, source_logits, progress,
                                             engine or self.engine)
        self.hits += 1
        return self.full(backbone.meta.spec)[rows]


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
        if cfg.strategies is None:
            self.cfg = replace(cfg, strategies=default_columns(self.data.modality))
        for s in self.cfg.strategies:
            modalities = traits(column(s).strategy).modalities
            if self.data.modality not in modalities:
                raise ConfigError(f"Study strategy '{s}' needs {' or '.join(modalities)} data; "
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
            # keys added to FitConfig after the study started count as their defaults; flat training keys of
            # older studies land in `training`
            ignored = {"train": None, "name": None, "runs_dir": None}  # not what a cell depends on (settings())
            try:
                base = {k: v for k, v in old["base"].items() if k not in ignored}
                old["base"] = json.loads(json.dumps(FitConfig.from_dict(base).to_dict() | ignored, default=str))
            except ConfigError:
                pass
            old["base"] = {k: v for k, v in old["base"].items() if k in now["base"]}
            if old != now:
                ob, nb = flat_keys(old["base"]), flat_keys(now["base"])
                diff = sorted(k for k in set(ob) | set(nb) if ob.get(k) != nb.get(k))
                what = ", ".join(diff) or ("data" if old["data"] != now["data"] else "scratch backbone")
                raise ConfigError(f"Study folder '{self.out}' holds results made with other settings ({what}). "
                                  "Use a new --out, or delete the folder to start over.")
        else:
            write_json(path, now)

    # -- one cell -------------------------------------------------------------------------------------
    def _all_features(self, backbone_spec: str) -> np.ndarray:
        """Frozen features of every example, extracted once per backbone and shared by all seeds' splits (a
        ``scratch:`` backbone is initialised with the base config's seed, so they do not depend on cell order)."""
        if backbone_spec not in self._features:
            from ..backbones import create_backbone

            b = self.cfg.base
            bb = create_backbone(backbone_spec, image_size=b.image_size, max_length=b.max_length,
                                 seed=b.seed if backbone_spec.startswith("scratch:") else None)
            self._features[backbone_spec] = self.cache.get_or_compute(
                bb, Inputs(self.data, bb), max(b.training.batch_size, 64), f"extract {backbone_spec}", progress=self.progress)
        return self._features[backbone_spec]

    def _probe_features(self, backbone_spec: str, split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The shared frozen features of each part of ``split``."""
        feats = self._all_features(backbone_spec)
        return {name: feats[i] for name, i in split.items()}

    def _backbone(self, strategy: str, role: str, backbone: str | None, modality: str) -> str:
        """The backbone spec a cell of the column (``strategy``, ``role``) fits."""
        if role == OWN:
            return traits(strategy).own_backbone(modality)
        if role == CANDIDATE:
            return backbone
        return self.cfg.scratch_backbone or DEFAULT_SCRATCH[modality]

    def run_cell(self, strategy: str, backbone: str | None, budget: Any, seed: int, parts: dict[str, Dataset],
                 split: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Fit study column ``strategy`` on the budget's training rows of the pool, evaluate on the test part."""
        from ..pipeline import fit

        b = self.cfg.base
        col = column(strategy)
        idx = _budget_indices(parts["pool"].y, budget, seed, b.task)
        train = parts["pool"].subset(idx)
        t0 = time.perf_counter()
        cache: FeatureCache = self.cache
        if traits(col.strategy).frozen_features:  # one extraction of the whole data, shared by every cell
            split = split if split is not None else self._split_indices(seed)
            cache = SharedFeatures(self._all_features, self.cache, [
                (train, split["pool"][idx]), (parts["val"], split["val"]), (parts["test"], split["test"])])
        spec = self._backbone(col.strategy, col.role, backbone, train.modality)
        cfg = replace(b, backbone=spec, strategy=col.strategy, seed=seed)
        r = fit(cfg, train=train, val=parts["val"], test=parts["test"], progress=False, save=False, cache=cache)
        name, value = headline(r.metrics, b.task)
        return {"strategy": strategy, "backbone": backbone if col.role == CANDIDATE else None,
                "series": series_name(strategy, backbone), "budget": budget, "seed": seed, "n_train": int(len(idx)),
                "metric": name, "value": float(value), "accuracy": r.metrics.get("accuracy"),
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
            if column(s).baseline:
                cells.append((s, None))
            else:
                cells += [(s, bb) for bb in self.cfg.backbones]
        return cells

    def run(self) -> dict[str, Any]:
        plan = self.plan()
        total = len(plan) * len(self.cfg.budgets) * len(self.cfg.seeds)
        results = []
        with tqdm(total=total, desc="compare", unit="cell", disable=not self.progress) as bar:
            for seed in self.cfg.seeds:
                split = self._split_indices(seed)
                parts = {name: self.data.subset(i) for name, i in split.items()}
                for budget in self.cfg.budgets:
                    for strategy, backbone in plan:
                        key = f"{strategy}__{backbone}__{budget}__{seed}".replace("/", "_").replace(":", "-")
                        path = self.out / "cells" / f"{key}.json"
                        if path.exists():
                            results.append(json.loads(path.read_text(encoding="utf-8")))
                        else:
                            bar.set_postfix_str(f"{series_name(strategy, backbone)} k={budget} seed={seed}")
                            cell = self.run_cell(strategy, backbone, budget, seed, parts, split)
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
