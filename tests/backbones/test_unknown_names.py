"""Unknown model names and unreachable weights: one line naming the spec, with the closest names that exist."""
from __future__ import annotations

import pytest

from tests.helpers import cli, one_line_error
from transferkit.backbones import create_backbone
from transferkit.errors import ConfigError


@pytest.mark.parametrize("spec, closest", [
    ("timm:resnet_18", "resnet18"),
    ("timm:efficientnet_lite_0", "efficientnet_lite0"),
    ("torchvision:resnet_18", "resnet18"),
])
def test_unknown_model_lists_the_closest_names(spec, closest):
    with pytest.raises(ConfigError, match=f"Unknown .* model .*Closest: .*{closest}"):
        create_backbone(spec)


def test_unknown_model_through_the_cli_is_one_line(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("text,label\n" + "".join(f"text {i},{'xy'[i % 2]}\n" for i in range(20)))
    assert cli("fit", "--train", table, "--text-column", "text", "--backbone", "timm:not_a_model_xyz",
               "--runs-dir", tmp_path / "runs") == 2
    line = one_line_error(capsys.readouterr().err)
    assert "timm:not_a_model_xyz" in line and "timm.list_models()" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_weights_that_cannot_be_downloaded_are_a_clear_error(monkeypatch):
    """Offline (as in this suite): a real timm architecture whose pretrained weights are not cached."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="Cannot get the pretrained weights of 'timm:resnet10t'.*packaged:"):
        create_backbone("timm:resnet10t", pretrained=True)
    assert create_backbone("timm:resnet10t", pretrained=False).meta.feature_dim > 0


def test_quiet_silences_the_transformers_weight_loader(tmp_path, capfd):
    table = tmp_path / "t.csv"
    table.write_text("text,label\n" + "".join(f"word{i % 4} some text {i},{'ab'[i % 2]}\n" for i in range(24)))
    assert cli("--quiet", "fit", "--train", table, "--text-column", "text", "--backbone", "packaged:minilm-l6",
               "--max-length", "16", "--runs-dir", tmp_path / "runs", "--name", "q") == 0
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err, err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled(), "the library's setting is restored after the command"
