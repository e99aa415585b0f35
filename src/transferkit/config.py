"""Typed configuration: dataclasses that round-trip to YAML and reproduce a run; help text lives in each field's
metadata and the CLI builds its flags from it (``transferkit.cli.flags``)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, bad_param, suggest

MAX_CONFIG_BYTES = 1 << 20  # a config is a short mapping; a bigger file is refused before parsing
MAX_NESTING = 64
_BRACKETS = re.compile(r"[\[\]{}]")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_SCALARS = (str, bool, int, float)


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help text (shown by the CLI, which builds its flags from the dataclass)."""
    return field(default=default, default_factory=factory, metadata={"help": help})


def nested_configs(cls: type) -> dict[str, type]:
    """Fields of a config dataclass that are config dataclasses themselves (e.g. ``training``)."""
    hints = {"TrainConfig": TrainConfig, "LoraConfig": LoraConfig}
    return {f.name: hints[f.type] for f in fields(cls) if isinstance(f.type, str) and f.type in hints}


def _plain(v: Any) -> Any:
    """NumPy scalars as Python ones (``np.float64(0.1)`` -> ``0.1``), paths as strings."""
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        return v.item()
    return os.fspath(v) if isinstance(v, os.PathLike) else v


def _as_float(v: Any) -> Any:
    """A numeric string (YAML 1.1 reads ``1e-3`` as text) as its float; anything else unchanged."""
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return v
        return x if math.isfinite(x) else v
    return v


def _kind(f: dataclasses.Field) -> tuple[str, bool]:
    """(``"str"`` / ``"int"`` / ``"float"`` / ``"bool"`` / ``"list[float]"`` / other, whether None is allowed)."""
    t = str(f.type).replace(" ", "")
    return t.removesuffix("|None"), t.endswith("|None")


def _type_problem(kind: str, optional: bool, v: Any) -> str | None:
    """What is structurally wrong with ``v`` for a field of ``kind`` (None: nothing). Numbers and ranges are left
    to ``validate``, which names them with the one template; this refuses what would break before it (a
    mapping or list where a scalar goes, a number where a name goes)."""
    if v is None:
        return None if optional or kind in ("int", "float") else "a value, not empty (null)"
    if kind == "str" and not isinstance(v, str):
        return "a string (quote it in YAML: '...')"
    if kind == "bool" and not isinstance(v, bool):
        return "true or false"
    if kind in ("int", "float") and not isinstance(v, _SCALARS):
        return "an integer" if kind == "int" else "a number"
    if kind.startswith("list[") and (not isinstance(v, (list, tuple))
                                     or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        return "a list of numbers, e.g. [0.1, 1.0, 10.0]"
    return None


def _string_keys(d: Any, where: str) -> dict[str, Any]:
    """``d`` with its keys checked to be names and dashes read as underscores."""
    if not isinstance(d, dict):
        raise ConfigError(f"The settings in {where} must be a mapping of key: value, got {_short.repr(d)}.")
    for k in d:
        if not isinstance(k, str):
            raise ConfigError(f"Key {_short.repr(k)} in {where} is not a name: keys are words such as 'epochs' "
                              "(quote it in YAML if it looks like a number or true/false).")
    return {k.replace("-", "_"): v for k, v in d.items()}


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error as 'line L, column C: problem' (PyYAML's own text spans several lines)."""
    mark, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if context is not None and getattr(e, "context", None) and (mark is None or context.line != mark.line):
        problem += f" ({e.context} at line {context.line + 1}, column {context.column + 1})"
    return f"{where}{problem}"


class YamlConfig:
    """YAML / dict round-trip for config dataclasses, with a clear error for unknown keys.

    Nested configs (``training``) are written as mappings; flat keys of a nested config given at the top level
    (CLI flags, configs written before the nesting) are moved into it.
    """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> Any:
        d = _string_keys(d, where)
        nested = nested_configs(cls)
        names = {f.name for f in fields(cls)}
        inner: dict[str, dict[str, Any]] = {}
        for key, sub in nested.items():
            sub_names = {f.name for f in fields(sub)} - names
            given = d.pop(key, None)
            given = {} if given is None else given.to_dict() if isinstance(given, YamlConfig) else given
            if not isinstance(given, dict):
                raise ConfigError(f"'{key}' in {where} must be a mapping of key: value, got {_short.repr(given)}.")
            flat = {k: d.pop(k) for k in list(d) if k in sub_names}  # given at the top level
            inner[key] = {**sub.checked_values(given, f"{where} ({key})"), **sub.checked_values(flat, where)}
        known = names | {n for sub in nested.values() for f in fields(sub) for n in [f.name]}
        unknown = [k for k in d if k not in names]
        if unknown:
            k = unknown[0]
            raise ConfigError(f"Unknown key '{k}' in {where}.{suggest(k, known)} "
                              f"Known keys: {', '.join(sorted(known))}.")
        made = {}
        for key, given in inner.items():  # checked above: unknown keys (with suggestions) and types
            made[key] = dataclasses.replace(getattr(cls(), key), **given)  # on the owner's defaults
        return cls(**cls.checked_values(d, where), **made)

    @classmethod
    def checked_values(cls, d: dict[str, Any], where: str = "config") -> dict[str, Any]:
        """``d`` (flat keys of ``cls``) with unknown keys and misplaced types refused in one line naming
        ``where``; NumPy scalars, paths and numeric strings of float settings made plain."""
        kinds = {f.name: _kind(f) for f in fields(cls) if f.name not in nested_configs(cls)}
        out = {}
        for k, v in _string_keys(d, where).items():
            if k not in kinds:
                raise ConfigError(f"Unknown key '{k}' in {where}.{suggest(k, kinds)} "
                                  f"Known keys: {', '.join(sorted(kinds))}.")
            kind, optional = kinds[k]
            v = _as_float(_plain(v)) if kind == "float" else _plain(v)
            problem = _type_problem(kind, optional, v)
            if problem:
                raise ConfigError(f"'{k}' in {where} must be {problem}; got {_short.repr(v)}.")
            out[k] = v
        return out

    def check_types(self, owner: str) -> None:
        """The structural checks of :meth:`checked_values` on a config built directly (one-line ConfigError)."""
        for f in fields(self):
            kind, optional = _kind(f)
            problem = _type_problem(kind, optional, getattr(self, f.name))
            if problem:
                raise bad_param(owner, f.name, problem, getattr(self, f.name))

    @classmethod
    def from_yaml(cls, path: str | Path) -> Any:
        p = Path(path)
        d = _load_yaml(p)
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"Config file '{p}' must hold a mapping of key: value (one 'key: value' per line), "
                              f"not a YAML {type(d).__name__}.")
        return cls.from_dict(d, where=str(p))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def updated(self, **changes: Any) -> Any:
        """A copy with ``changes``; keys of a nested config may be given flat (``cfg.updated(lr=1e-4)``)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _bracket_depth(text: str) -> int:
    """The deepest nesting of YAML flow brackets (PyYAML takes seconds to fail on thousands of levels)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(text):
        depth = depth + 1 if m.group() in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


def _load_yaml(p: Path) -> Any:
    """The parsed YAML of config file ``p``; every problem (missing, not a file, too big, not UTF-8, bad YAML) is a
    one-line ConfigError naming the file and, for bad YAML, the line."""
    try:
        exists, is_file = p.exists(), p.is_file()
        size = p.stat().st_size if is_file else 0
    except (OSError, ValueError) as e:  # a NUL in the name, a name too long
        raise ConfigError(f"Cannot read config file '{p}': {getattr(e, 'strerror', None) or e}.") from None
    if not exists:
        raise ConfigError(f"Config file '{p}' does not exist.")
    if not is_file:
        raise ConfigError(f"Config file '{p}' is not a regular file. Give a YAML file.")
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"Config file '{p}' has {size} bytes; a config is a short YAML mapping (at most "
                          f"{MAX_CONFIG_BYTES} bytes). Is it the right file?")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"Cannot read config file '{p}': {e.strerror or e}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file '{p}' is not UTF-8 text (byte {e.start} is {raw[e.start]:#04x}). "
                          "Save it as UTF-8.") from None
    depth = _bracket_depth(text)
    if depth > MAX_NESTING:
        raise ConfigError(f"Config file '{p}' nests brackets {depth} levels deep; a config is a flat mapping of "
                          "key: value (lists of numbers at most).")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file '{p}' is not valid YAML: {_yaml_problem(e)}. Fix that line (YAML: "
                          "'key: value', with a space after the colon).") from None
    except (ValueError, OverflowError, RecursionError) as e:  # more than 4300 digits, nesting too deep
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"Config file '{p}' cannot be read ({msg}). Give a flat mapping of key: value.") from None


@dataclass
class TrainConfig(YamlConfig):
    """Training settings, declared once: shared by fit, adapt and the engine's trainer."""

    epochs: int = setting(5, "training epochs")
    batch_size: int = setting(32, "examples per batch")
    lr: float | None = setting(None, "peak learning rate (of the head; lower layer groups get layer_decay per "
                                     "group less); default: by backbone family, 1e-3 for CNNs and scratch models, "
                                     "2e-4 for pretrained transformers (`transferkit info`)")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    layer_decay: float = setting(1.0, "layer-wise LR decay per group below the head (1 = none: 0.85 cost macro-F1 "
                                      "on digits and MNIST, see the peers ablation in BENCHMARKS.md)")
    freeze: int = setting(0, "freeze the bottom K layer groups during fine-tuning")
    warmup: float = setting(0.1, "fraction of the optimiser steps spent in linear LR warm-up (then cosine decay)")
    grad_clip: float = setting(1.0, "clip the gradient norm at this value (0 = off)")
    accumulate: int = setting(1, "batches accumulated per optimiser step")
    patience: int = setting(3, "early stopping: epochs without a validation gain before stopping")
    min_steps: int = setting(100, "small data: repeat passes within each epoch until training has at least this "
                                  "many optimiser steps (0: exactly --epochs passes)")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")
    length_buckets: bool = setting(True, "text: batch texts of similar length together (less padding, faster); "
                                         "--no-length-buckets draws batches uniformly at random")
    precision: str = setting("fp32", "training arithmetic: fp32 | bf16 (CPU autocast; about 2x faster on CPUs with "
                                     "native bf16) | fp16 (CUDA, with a gradient scaler)")
    device: str = setting("cpu", "where training runs: cpu | cuda | auto (cuda when available)")
    checkpoint_every: int = setting(200, "optimiser steps between crash-safe checkpoints (also written at every "
                                         "epoch end and on Ctrl-C / SIGTERM; 0: epoch ends only)")

    def validate(self, owner: str = "TrainConfig") -> TrainConfig:
        self.check_types(owner)
        for name, lo in (("epochs", 1), ("batch_size", 1), ("accumulate", 1), ("patience", 1), ("min_steps", 0),
                         ("freeze", 0), ("checkpoint_every", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad_param(owner, name, f"an integer >= {lo}", v)
        for name in ("lr", "layer_decay"):
            v = getattr(self, name)
            if name == "lr" and v is None:  # the backbone family's default, resolved when the backbone is built
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise bad_param(owner, name, "a float in (0, inf)", v)
        for name in ("warmup", "label_smoothing"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise bad_param(owner, name, "a float in [0, 1)", v)
        for name in ("weight_decay", "grad_clip"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise bad_param(owner, name, "a float >= 0", v)
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise bad_param(owner, "precision", "'fp32', 'bf16' or 'fp16'", self.precision)
        if self.device != "auto" and not (isinstance(self.device, str) and self.device.split(":")[0] in ("cpu", "cuda")):
            raise bad_param(owner, "device", "'cpu', 'cuda', 'cuda:N' or 'auto'", self.device)
        return self


@dataclass
class LoraConfig(YamlConfig):
    """LoRA settings (strategy lora): adapter rank, scaling, dropout and which backbone layers get adapters."""

    lora_r: int = setting(8, "LoRA: rank of each low-rank adapter (strategy lora)")
    lora_alpha: float = setting(16.0, "LoRA: scaling alpha; an adapter's update is scaled by alpha / rank")
    lora_dropout: float = setting(0.05, "LoRA: dropout on the adapters' input during training")
    lora_targets: str | None = setting(None, "LoRA: comma-separated regexes searched in the backbone's module names "
                                             "(e.g. 'query,value'); default: found per backbone family (attention "
                                             "projections of transformers, convolutions after the stem of CNNs)")

    def validate(self, owner: str = "LoraConfig") -> LoraConfig:
        self.check_types(owner)
        if not isinstance(self.lora_r, int) or isinstance(self.lora_r, bool) or not 1 <= self.lora_r <= MAX_LORA_RANK:
            raise bad_param(owner, "lora_r", f"an integer in [1, {MAX_LORA_RANK}]", self.lora_r)
        a = self.lora_alpha
        if not isinstance(a, (int, float)) or isinstance(a, bool) or not math.isfinite(a) or a <= 0:
            raise bad_param(owner, "lora_alpha", "a float in (0, inf)", a)
        d = self.lora_dropout
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 <= d < 1:
            raise bad_param(owner, "lora_dropout", "a float in [0, 1)", d)
        if self.lora_targets is not None:
            pats = [t.strip() for t in self.lora_targets.split(",")]
            if not all(pats):
                raise bad_param(owner, "lora_targets", "comma-separated module-name patterns, none empty (or left "
                                "out for the backbone family's default)", self.lora_targets)
            for t in pats:
                try:
                    re.compile(t)
                except re.error as e:
                    raise bad_param(owner, "lora_targets", f"regular expressions ({t!r}: {e})",
                                    self.lora_targets) from None
        return self


MAX_LORA_RANK = 4096
MAX_THREADS = 1024
MAX_IMAGE_SIZE = 4096
MAX_LENGTH = 65536
RUN_PLACEMENT = ("runs_dir", "name", "overwrite")  # where a run goes, not what it computes


def flat_keys(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'training': {'lr': 1}}`` -> ``{'training.lr': 1}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_keys(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def refuse_changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Raise a one-line ConfigError naming every setting (other than the run's placement) that differs."""
    saved, now = flat_keys(saved), flat_keys(now)
    diff = [k for k in now if k not in RUN_PLACEMENT and saved.get(k) != now[k]]
    if diff:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now[k]!r})" for k in diff)
        raise ConfigError(f"Cannot resume with different settings: {shown}. Resume with the settings it was "
                          "started with, or start over with --overwrite.")


@dataclass
class FitConfig(YamlConfig):
    """Everything a fit needs; saved as ``config.yaml`` in every run."""

    # what to transfer and how
    backbone: str = setting("packaged:efficientnet_lite0", "backbone spec, e.g. packaged:efficientnet_lite0, "
                            "timm:resnet18, hf:DIR, or auto (see `transferkit info`)")
    strategy: str = setting("linear-probe", "how to adapt the backbone: a registered strategy (`transferkit info`)")
    task: str = setting("classification", "classification | regression")
    seed: int = setting(0, "seed of the splits, initialisation and batch order")
    # data
    train: str | None = setting(None, "image folder (one sub-folder per class) or CSV/JSONL/Parquet table")
    val: str | None = setting(None, "validation data (default: split from train)")
    test: str | None = setting(None, "test data (default: split from train)")
    text_column: str | None = setting(None, "text column(s) of a table, comma-separated columns are joined")
    image_column: str | None = setting(None, "image-path column of a table")
    label_column: str = setting("label", "label column of a table")
    id_column: str | None = setting(None, "id column of a table (kept in predictions)")
    val_fraction: float = setting(0.15, "fraction of train held out for validation when --val is not given")
    test_fraction: float = setting(0.15, "fraction of train held out for testing when --test is not given")
    strict: bool = setting(False, "stop at the first unreadable image instead of skipping it")
    # preprocessing
    image_size: int | None = setting(None, "input size in pixels (default: the backbone's)")
    max_length: int | None = setting(None, "text: tokens per example (default: the backbone's)")
    pooling: str | None = setting(None, "text encoders: token states -> one vector, mean | cls (default: the "
                                        "backbone's; cls runs export to stock transformers classifiers)")
    # training (fine-tune, lp-ft): declared once in TrainConfig, shared with adapt and the trainer
    training: TrainConfig = setting(factory=TrainConfig, help="training settings (fine-tune, lp-ft)")
    lora: LoraConfig = setting(factory=LoraConfig, help="LoRA settings (strategy lora)")
    class_weights: bool = setting(False, "weight classes inversely to their frequency")
    loss: str = setting("mse", "regression loss: mse | huber")
    head: str = setting("linear", "task head: linear | mlp")
    # linear probe
    probe_grid: list[float] = setting(factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0],
                                      help="comma-separated C values tried by the linear probe")
    candidates: str | None = setting(None, "comma-separated backbone specs to rank when --backbone auto")
    # engineering
    num_threads: int | None = setting(None, "torch threads (default: all cores)")
    engine: str = setting("eager", "feature-extraction engine: eager | compiled | onnx | onnx-int8 (checked "
                                   "against eager)")
    # where the run goes
    runs_dir: str = setting("runs", "folder of the runs")
    name: str | None = setting(None, "run name (default: strategy-backbone-time)")
    overwrite: bool = setting(False, "replace an existing run of this name")

    def validate(self) -> FitConfig:
        """Check types and ranges (one-line ``ConfigError``s); returns ``self``.

        Registry names (strategy, backbone spec and candidates, engine) are resolved where they are used:
        ``transferkit.pipeline.fit`` checks them first thing (``check_names``), before any work.
        """
        self.check_types("FitConfig")
        if self.task not in {t.value for t in Task}:
            raise bad_param("FitConfig", "task", "'classification' or 'regression'", self.task)
        # backbone "auto": chosen by transferability ranking among the candidates (transferkit.ranking)
        if "auto" in (self.backbone, self.strategy) and self.task != "classification":
            raise ConfigError(f"backbone/strategy 'auto' ranks candidates for classification; task {self.task!r} "
                              "needs an explicit --backbone and --strategy.")
        if not isinstance(self.training, TrainConfig):
            raise bad_param("FitConfig", "training", "a TrainConfig", self.training)
        self.training.validate("FitConfig")
        if not isinstance(self.lora, LoraConfig):
            raise bad_param("FitConfig", "lora", "a LoraConfig", self.lora)
        self.lora.validate("FitConfig")
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise bad_param("FitConfig", name, "a float in [0, 1)", v)
        if self.loss not in ("mse", "huber"):
            raise bad_param("FitConfig", "loss", "'mse' or 'huber'", self.loss)
        if not isinstance(self.engine, str) or not self.engine:
            raise bad_param("FitConfig", "engine", "an engine name (a string)", self.engine)
        if self.head not in ("linear", "mlp"):
            raise bad_param("FitConfig", "head", "'linear' or 'mlp'", self.head)
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            raise bad_param("FitConfig", "image_size", "an integer >= 8", self.image_size)
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise bad_param("FitConfig", "max_length", "an integer >= 2", self.max_length)
        if self.pooling not in (None, "mean", "cls"):
            raise bad_param("FitConfig", "pooling", "'mean' or 'cls'", self.pooling)
        self._validate_bounds()
        return self

    def _validate_bounds(self) -> None:
        """Upper bounds (a huge seed overflows torch; a huge size or thread count exhausts memory), the linear
        probe's grid, and names that must be plain folder names or paths."""
        for name, lo, hi in (("seed", 0, 2**63 - 1), ("num_threads", 1, MAX_THREADS),
                             ("image_size", 8, MAX_IMAGE_SIZE), ("max_length", 2, MAX_LENGTH)):
            v = getattr(self, name)
            if v is None and name != "seed":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise bad_param("FitConfig", name, f"an integer in [{lo}, {hi}]", v)
        grid = self.probe_grid
        if not grid or not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in grid):
            raise bad_param("FitConfig", "probe_grid", "a non-empty list of positive numbers (C values)", grid)
        for name in ("train", "val", "test"):
            if getattr(self, name) == "":
                raise bad_param("FitConfig", name, "a path to data (or left out)", "")
        if self.name is not None and (self.name in ("", ".", "..") or any(c in self.name for c in "/\\\0")):
            raise bad_param("FitConfig", "name", "a plain folder name (no '/', '\\', or '..')", self.name)

