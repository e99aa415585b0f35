"""Study columns come from the strategy registry: every registered strategy is a column, plus ``scratch``."""
from __future__ import annotations

import pytest

from transferkit.errors import ConfigError
from transferkit.strategies import STRATEGIES, TRAITS
from transferkit.study.columns import (CANDIDATE, OWN, SCRATCH, Column, column, default_columns, is_baseline, names,
                                       series_name)


def test_every_registered_strategy_is_a_column():
    assert names() == ["scratch", *STRATEGIES.names()]
    assert set(TRAITS) <= set(STRATEGIES.names())
    assert column("scratch") == Column("fine-tune", SCRATCH)
    assert column("classical") == Column("classical", OWN)
    assert all(column(s).role == CANDIDATE for s in STRATEGIES.names() if s != "classical")


def test_default_columns_follow_the_registry_and_the_modality():
    image = default_columns("image")
    assert image[:2] == ["classical", "scratch"] and "hybrid" not in image and "auto" not in image
    assert set(image[2:]) == set(STRATEGIES.names()) - {"classical", "hybrid", "contrastive", "auto", "lora"}
    assert "lora" not in default_columns("text"), "opt-in (needs the lora extra): asked for by name"
    assert set(default_columns("text")) == set(image) | {"hybrid", "contrastive"}


def test_series_and_baselines():
    assert series_name("classical", None) == "classical" and series_name("lp-ft", "timm:x") == "lp-ft (timm:x)"
    assert is_baseline("classical") and is_baseline("scratch")
    assert not is_baseline("hybrid (x)") and not is_baseline("linear-probe")
    with pytest.raises(ConfigError, match="Did you mean 'scratch'"):
        column("scratc")
