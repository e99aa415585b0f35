"""Proxy A-distance, DEV and the selection helpers; method parsing and config validation."""
from __future__ import annotations

import numpy as np
import pytest

from transferkit.adapt import AdaptConfig, dev_risk, parse_method, proxy_a_distance
from transferkit.adapt.selection import choose, criterion_score, oracle
from transferkit.errors import ConfigError


def test_proxy_a_distance_near_zero_for_same_distribution_and_two_for_separable():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 5)), rng.normal(size=(600, 5))
    assert proxy_a_distance(a, b) < 0.3
    assert proxy_a_distance(a, b + 6.0) > 1.95
    mid = proxy_a_distance(a, b + 0.5)
    assert 0.3 < mid < 1.95


def test_dev_risk_equals_plain_loss_when_domains_match_and_weights_target_like_errors():
    rng = np.random.default_rng(0)
    src, tgt, val = rng.normal(size=(400, 3)), rng.normal(size=(400, 3)), rng.normal(size=(200, 3))
    loss = rng.uniform(0, 1, 200)
    assert dev_risk(src, tgt, val, loss) == pytest.approx(loss.mean(), abs=0.1)
    # target lies towards +x: validation errors made there count more
    tgt_shift = tgt + np.array([1.5, 0, 0])
    loss_where_target = (val[:, 0] > 0).astype(float)
    assert dev_risk(src, tgt_shift, val, loss_where_target) > loss_where_target.mean() + 0.1


def _cand(step, w, dev, acc, ent, test_acc):
    return {"step": step, "trade_off": w, "scores": {"dev_risk": dev, "source_val_accuracy": acc,
                                                     "target_entropy": ent},
            "oracle": {"accuracy": test_acc}}


def test_choose_and_oracle():
    cands = [_cand(1, 0.3, 0.5, 0.9, 0.2, 0.6), _cand(2, 0.3, 0.2, 0.8, 0.1, 0.7), _cand(1, 1.0, 0.4, 0.95, 0.5, 0.8)]
    assert choose(cands, "dev") == 1
    assert choose(cands, "source-val") == 2
    assert choose(cands, "entropy") == 1  # 0.8 - 0.1 = 0.7 is the best
    assert choose(cands, "last") == 2  # largest trade-off, latest step
    assert oracle(cands) == 2
    with pytest.raises(ConfigError, match="Did you mean 'dev'"):
        criterion_score(cands[0]["scores"], "dve")


def test_parse_method_combinations_and_errors():
    assert parse_method("dann+mcc") == ["dann", "mcc"]
    assert parse_method(" coral + adabn ") == ["coral", "adabn"]
    with pytest.raises(ConfigError, match="Did you mean 'dann'"):
        parse_method("dan")
    with pytest.raises(ConfigError, match="combines with nothing"):
        parse_method("source-only+dann")
    with pytest.raises(ConfigError, match="pick dann or cdan"):
        parse_method("dann+cdan")
    with pytest.raises(ConfigError, match="twice"):
        parse_method("mcc+mcc")


@pytest.mark.parametrize("kwargs, match", [
    ({"backbone": "scratch:cnn", "run": "runs/x"}, "exactly one of --backbone"),
    ({}, "exactly one of --backbone"),
    ({"backbone": "scratch:cnn", "select": "oracle"}, "Unknown selection criterion"),
    ({"backbone": "scratch:cnn", "features": "frozn"}, "'features' parameter"),
    ({"backbone": "scratch:cnn", "epochs": 0}, "'epochs' parameter"),
    ({"backbone": "scratch:cnn", "trade_offs": [1.0, -1.0]}, "'trade_offs' parameter"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdaptConfig.from_dict(kwargs).validate()


def test_config_yaml_round_trip(tmp_path):
    c = AdaptConfig(method="cdan", backbone="scratch:cnn", trade_offs=[0.3, 1.0], image_size=16)
    p = tmp_path / "a.yaml"
    p.write_text(c.to_yaml())
    assert AdaptConfig.from_yaml(p) == c
    p.write_text("methd: dann\n")
    with pytest.raises(ConfigError, match="Did you mean 'method'"):
        AdaptConfig.from_yaml(p)
