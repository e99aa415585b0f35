"""The study's columns: every registered strategy, plus ``scratch`` (fine-tune on a randomly initialised backbone).

A column is a (registered strategy, backbone role) pair; its name is the strategy's own, except for the entries
of :data:`COLUMNS`. The role says which backbone a cell fits:

* ``own``: the strategy's own featuriser (``classical``: ``classical:pixels`` / ``classical:tfidf``); a baseline;
* ``scratch``: ``--scratch-backbone`` (default ``scratch:cnn`` / ``scratch:transformer``); a baseline;
* ``candidate``: each of the study's transfer backbones (``--backbones``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, suggest
from ..strategies import STRATEGIES, traits

OWN, SCRATCH, CANDIDATE = "own", "scratch", "candidate"
DEFAULT_SCRATCH = {"image": "scratch:cnn", "text": "scratch:transformer"}


@dataclass(frozen=True)
class Column:
    strategy: str  # registered in transferkit.strategies.STRATEGIES
    role: str      # OWN | SCRATCH | CANDIDATE

    @property
    def baseline(self) -> bool:
        """A no-transfer column (one series, no backbone in its name)."""
        return self.role != CANDIDATE


# Columns that are not simply a registered strategy on the candidate backbones.
COLUMNS: dict[str, Column] = {"scratch": Column("fine-tune", SCRATCH)}


def names() -> list[str]:
    """Every column name a study accepts."""
    return [*COLUMNS, *STRATEGIES.names()]


def column(name: str) -> Column:
    """The column called ``name``.

    Raises:
        ConfigError: ``name`` is neither a registered strategy nor a study column.
    """
    if name in COLUMNS:
        return COLUMNS[name]
    if name not in STRATEGIES:
        raise ConfigError(f"Unknown study strategy '{name}'.{suggest(name, names())} Choose from "
                          f"{', '.join(names())}.")
    return Column(name, OWN if traits(name).own_backbone is not None else CANDIDATE)


def is_baseline(series: str) -> bool:
    """Whether a study series (a column name, or ``"strategy (backbone)"``) is a no-transfer baseline."""
    return (series in COLUMNS or series in STRATEGIES) and column(series).baseline


def default_columns(modality: str) -> list[str]:
    """The columns of a study when none are given: the baselines, then every strategy that runs on ``modality``
    data (strategies that choose among the others, such as ``auto``, and opt-in ones such as ``lora`` are left out)."""
    order = {OWN: 0, SCRATCH: 1, CANDIDATE: 2}
    picked = [n for n in names() if modality in traits(column(n).strategy).modalities
              and not traits(column(n).strategy).chooser and traits(column(n).strategy).in_default_study]
    return sorted(picked, key=lambda n: order[column(n).role])


def series_name(name: str, backbone: str | None) -> str:
    """The series a cell belongs to: the column name for baselines, else ``"column (backbone)"``."""
    return name if column(name).baseline else f"{name} ({backbone})"


__all__ = ["CANDIDATE", "COLUMNS", "Column", "DEFAULT_SCRATCH", "OWN", "SCRATCH", "column", "default_columns",
           "is_baseline", "names", "series_name"]
