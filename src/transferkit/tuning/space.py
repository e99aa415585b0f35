"""The search space: FitConfig fields (flat ``lr`` or dotted ``training.lr``) mapped to a range or a list of
choices, checked against the base config before any trial.

.. code-block:: yaml

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float (log-uniform)
    epochs: {low: 1, high: 5}                    # int (both bounds integers)
    strategy: {choices: [linear-probe, fine-tune]}
    probe_grid: {choices: [[0.1, 1.0], [1.0, 10.0, 100.0]]}
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import FitConfig, _load_yaml, nested_configs
from ..errors import ConfigError, suggest

RANGE_KEYS = ("low", "high", "log", "step")
# fields that fix the data every trial shares, or where a run goes: never searched
FIXED = {**{k: "it defines the data that every trial (and the refit of best.yaml) shares" for k in
            ("train", "val", "test", "text_column", "image_column", "label_column", "id_column", "task", "seed",
             "val_fraction", "test_fraction", "strict")},
         **{k: "it says where a run goes, not what it computes" for k in ("runs_dir", "name", "overwrite")}}


def _kind(f: Any) -> str:
    return str(f.type).replace(" ", "").removesuffix("|None")


def _field_kinds() -> dict[str, str]:
    """Flat field name -> ``int`` / ``float`` / ``str`` / ``bool`` / ``list[float]`` (None-ness dropped), for
    FitConfig's own fields and those of its nested configs (``training``, ...), which FitConfig takes flat."""
    nested = nested_configs(FitConfig)
    out = {f.name: _kind(f) for f in fields(FitConfig) if f.name not in nested}
    for sub in nested.values():
        out.update({f.name: _kind(f) for f in fields(sub)})
    return out


def _canonical(key: str) -> str:
    """``training.lr`` / ``training-lr``-style keys as the flat field name (``lr``)."""
    key = key.replace("-", "_")
    head, dot, rest = key.partition(".")
    return rest if dot and head in nested_configs(FitConfig) else key


@dataclass(frozen=True)
class Param:
    """One searched field: a float / int range, or categorical ``choices`` (``labels`` are what Optuna sees)."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def labels(self) -> list[Any]:
        """Choices as Optuna categoricals: scalars as they are, lists (probe_grid) as their JSON text."""
        return [c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c) for c in self.choices]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return self.value(trial.suggest_categorical(self.name, self.labels))

    def value(self, optuna_value: Any) -> Any:
        """The config value of a stored trial parameter (a categorical's label back to its choice)."""
        if self.kind != "categorical":
            return int(optuna_value) if self.kind == "int" else float(optuna_value)
        return self.choices[self.labels.index(optuna_value)]

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(json.dumps(c) if not isinstance(c, str) else c for c in self.choices)
        scale = ", log" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.kind} in [{self.low:g}, {self.high:g}]{scale}"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.step is not None:
            d["step"] = self.step
        return d


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    where: str = "space"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: Any, base_strategy: str) -> dict[str, Any]:
        """This trial's config changes (flat FitConfig keys). The strategy is drawn first (when searched), then
        only the fields that strategy reads: a linear-probe trial draws no learning rate, so that TPE models each
        strategy's own settings and two probe trials with the same probe settings are the same config."""
        from ..strategies import unread_settings

        out: dict[str, Any] = {}
        for p in sorted(self.params, key=lambda p: p.name != "strategy"):
            if p.name != "strategy" and p.name in unread_settings(out.get("strategy", base_strategy)):
                continue
            out[p.name] = p.suggest(trial)
        return out

    def values(self, optuna_params: dict[str, Any]) -> dict[str, Any]:
        """A stored trial's parameters as config changes."""
        by = {p.name: p for p in self.params}
        return {k: by[k].value(v) for k, v in optuna_params.items() if k in by}

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}

    def max_epochs(self, base: FitConfig) -> int:
        """The most epochs a trial can train (Hyperband's maximum resource)."""
        for p in self.params:
            if p.name == "epochs":
                return int(p.high if p.kind == "int" else max(p.choices))
        return base.training.epochs

    def check_against(self, base: FitConfig) -> SearchSpace:
        """Every bound and choice applied alone to ``base`` must pass FitConfig's checks and name resolution
        (strategy, backbone, engine); the first that does not is a one-line ConfigError. Returns ``self``."""
        from ..pipeline import check_names

        for p in self.params:
            for v in ((p.low, p.high) if p.kind != "categorical" else p.choices):
                try:
                    check_names(base.updated(**{p.name: v}).validate())
                except ConfigError as e:
                    raise ConfigError(f"'{p.name}: {json.dumps(v) if not isinstance(v, str) else v}' in {self.where} "
                                      f"is refused by the base config: {e}") from None
        return self


def _number(v: Any, name: str, key: str, where: str) -> float | int:
    if isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as text
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"'{key}' of '{name}' in {where} must be a finite number; got {v!r}.")
    return v


def parse_param(name: str, spec: Any, kind: str, where: str) -> Param:
    """One entry of the space file (``name`` already canonical, ``kind`` its field's type)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"'{name}' in {where} must be a mapping {{low: L, high: H, log: true}} or "
                          f"{{choices: [...]}}; got {spec!r}.")
    for k in spec:
        if k not in (*RANGE_KEYS, "choices"):
            raise ConfigError(f"Unknown key '{k}' for '{name}' in {where}.{suggest(str(k), [*RANGE_KEYS, 'choices'])}"
                              " Give low/high (with log or step) or choices.")
    if "choices" in spec:
        if any(k in spec for k in RANGE_KEYS):
            raise ConfigError(f"'{name}' in {where} gives both choices and a range; give one of them.")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"'choices' of '{name}' in {where} must be a non-empty list; got {choices!r}.")
        texts = [json.dumps(c, sort_keys=True) for c in choices]
        if len(set(texts)) < len(texts):
            dup = next(t for t in texts if texts.count(t) > 1)
            raise ConfigError(f"'choices' of '{name}' in {where} repeat {dup}; list each choice once.")
        return Param(name, "categorical", choices=tuple(choices))
    if kind not in ("int", "float"):
        raise ConfigError(f"'{name}' in {where} is a {kind} setting: give {{choices: [...]}}, not a range.")
    missing = [k for k in ("low", "high") if k not in spec]
    if missing:
        raise ConfigError(f"'{name}' in {where} needs '{missing[0]}' (a range is {{low: L, high: H}}).")
    low, high = (_number(spec[k], name, k, where) for k in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"'log' of '{name}' in {where} must be true or false; got {log!r}.")
    step = None if spec.get("step") is None else _number(spec["step"], name, "step", where)
    if kind == "int" and not all(float(x).is_integer() for x in (low, high, *([step] if step else []))):
        raise ConfigError(f"'{name}' in {where} is an integer setting: give integer low/high; got "
                          f"low {low!r}, high {high!r}.")
    if not low < high:
        raise ConfigError(f"'{name}' in {where} must have low < high; got low {low!r}, high {high!r}.")
    if log and low <= 0:
        raise ConfigError(f"'{name}' in {where} has log: true, which needs low > 0; got low {low!r}.")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"'step' of '{name}' in {where} must be > 0 and cannot be combined with log; got {step!r}.")
    if kind == "int":
        return Param(name, "int", int(low), int(high), log, int(step) if step else None)
    return Param(name, "float", float(low), float(high), log, float(step) if step else None)


def parse_space(d: Any, where: str = "space") -> SearchSpace:
    """A space from its mapping; unknown fields, fixed fields and malformed entries are one-line ConfigErrors."""
    if not isinstance(d, dict) or not d:
        raise ConfigError(f"The search space {where} must be a non-empty mapping of FitConfig field: "
                          "{low, high, log} | {choices: [...]}.")
    kinds = _field_kinds()
    params: dict[str, Param] = {}
    for key, spec in d.items():
        if not isinstance(key, str):
            raise ConfigError(f"Key {key!r} in {where} is not a FitConfig field name.")
        name = _canonical(key)
        if name in FIXED:
            raise ConfigError(f"'{key}' in {where} cannot be searched: {FIXED[name]}. Set it in the base config.")
        if name not in kinds:
            known = sorted(k for k in kinds if k not in FIXED)
            raise ConfigError(f"Unknown field '{key}' in {where}.{suggest(name, known)} Searchable fields: "
                              f"{', '.join(known)}.")
        if name in params:
            raise ConfigError(f"'{key}' in {where} is given twice (flat and dotted: one of them, please).")
        params[name] = parse_param(name, spec, kinds[name], where)
    return SearchSpace(tuple(params.values()), where)


def load_space(path: str | Path) -> SearchSpace:
    """The space in YAML file ``path`` (the same file checks as a config file: size, encoding, YAML syntax)."""
    return parse_space(_load_yaml(Path(path)), where=str(path))
