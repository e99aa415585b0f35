"""FitConfig: validation with the one error template, unknown keys with suggestions, YAML round trip."""
from __future__ import annotations

import dataclasses

import pytest

from transferkit.config import FitConfig
from transferkit.errors import ConfigError, TransferkitError, bad_param, suggest


def test_defaults_validate_and_validate_returns_self():
    c = FitConfig()
    assert c.validate() is c


@pytest.mark.parametrize("field, value, expected", [
    ("epochs", 0, "an integer >= 1"),
    ("epochs", 2.5, "an integer >= 1"),
    ("epochs", True, "an integer >= 1"),
    ("batch_size", 0, "an integer >= 1"),
    ("patience", 0, "an integer >= 1"),
    ("accumulate", -1, "an integer >= 1"),
    ("freeze", -1, "an integer >= 0"),
    ("lr", 0.0, "a float in (0, inf)"),
    ("layer_decay", -0.5, "a float in (0, inf)"),
    ("val_fraction", 1.0, "a float in [0, 1)"),
    ("test_fraction", -0.1, "a float in [0, 1)"),
    ("warmup", 1.5, "a float in [0, 1)"),
    ("label_smoothing", 1.0, "a float in [0, 1)"),
    ("task", "ranking", "'classification' or 'regression'"),
    ("loss", "l1", "'mse' or 'huber'"),
    ("head", "deep", "'linear' or 'mlp'"),
    ("image_size", 4, "an integer >= 8"),
    ("max_length", 1, "an integer >= 2"),
])
def test_bad_values_name_the_parameter_and_expectation(field, value, expected):
    with pytest.raises(ConfigError) as e:
        FitConfig.from_dict({field: value}).validate()
    msg = str(e.value)
    assert f"'{field}' parameter of FitConfig must be {expected}" in msg
    assert f"Got {value!r} instead." in msg
    assert "\n" not in msg
    assert e.value.exit_code == 2 and isinstance(e.value, TransferkitError)


def test_unknown_strategy_backbone_and_engine_are_config_errors_before_any_work():
    """Registry names are resolved by fit (``check_names``), first thing: no data is needed to see the error."""
    from transferkit.pipeline import check_names, fit

    with pytest.raises(ConfigError, match="Unknown strategy 'finetune'.*Did you mean 'fine-tune'"):
        fit(FitConfig(strategy="finetune"), save=False, progress=False)
    with pytest.raises(ConfigError, match="source prefix"):
        fit(FitConfig(backbone="efficientnet_lite0"), save=False, progress=False)
    with pytest.raises(ConfigError) as e:
        check_names(FitConfig(engine="tensorrt"))
    assert str(e.value) == ("The 'engine' parameter of FitConfig must be compiled | eager | onnx | onnx-int8. "
                            "Got 'tensorrt' instead.")
    # validate() checks types and ranges only: a well-formed but unknown name passes it
    assert FitConfig(strategy="finetune", engine="tensorrt").validate().strategy == "finetune"


def test_from_dict_accepts_dashes_and_rejects_unknown_keys_with_a_suggestion():
    c = FitConfig.from_dict({"image-size": 48, "label_column": "y"})
    assert c.image_size == 48 and c.label_column == "y"
    with pytest.raises(ConfigError) as e:
        FitConfig.from_dict({"learning_rate": 0.1, "lr": 1}, where="my.yaml")
    msg = str(e.value)
    assert "Unknown key 'learning_rate' in my.yaml" in msg and "Known keys:" in msg and "lr" in msg
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        FitConfig.from_dict({"batchsize": 8})


def test_yaml_round_trip(tmp_path):
    c = FitConfig(backbone="scratch:cnn", strategy="lp-ft", seed=7, image_size=40, probe_grid=[0.5, 2.0],
                  text_column="subject,body", class_weights=True, name="x")
    p = tmp_path / "c.yaml"
    p.write_text(c.to_yaml(), encoding="utf-8")
    back = FitConfig.from_yaml(p)
    assert back == c
    assert [f.name for f in dataclasses.fields(FitConfig)] == list(back.to_dict())


@pytest.mark.parametrize("text, match", [("a: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "must hold a mapping")])
def test_bad_yaml_files(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        FitConfig.from_yaml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        FitConfig.from_yaml(tmp_path / "missing.yaml")


def test_empty_yaml_is_all_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("", encoding="utf-8")
    assert FitConfig.from_yaml(p) == FitConfig()


def test_error_helpers():
    assert suggest("lite0", ["efficientnet_lite0", "minilm-l6"]) == ""
    assert suggest("minilm-l7", ["efficientnet_lite0", "minilm-l6"]) == " Did you mean 'minilm-l6'?"
    e = bad_param("Thing", "size", "positive", -1)
    assert isinstance(e, ConfigError) and str(e) == "The 'size' parameter of Thing must be positive. Got -1 instead."
