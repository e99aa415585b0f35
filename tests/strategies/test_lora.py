"""Strategy lora: only adapters and the head train (on the engine's trainer), the saved model is the merged one and
matches the adapted one, runs load and predict without PEFT, and bad settings fail before training."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.backbones import create_backbone
from transferkit.config import FitConfig, LoraConfig, TrainConfig
from transferkit.data import from_arrays
from transferkit.engine.loop import param_groups
from transferkit.engine.model import TransferModel
from transferkit.errors import ConfigError
from transferkit.features.inputs import Inputs
from transferkit.pipeline import fit
from transferkit.strategies.base import FitContext
from transferkit.strategies.lora import (add_adapters, is_trainable, load_unmerged, merge_adapters,
                                         resolve_targets)

from tests.conftest import stratified_pick

pytest.importorskip("peft")  # the strategy's optional dependency (extra: transferkit[lora])

FAST = dict(epochs=1, batch_size=16, min_steps=0, patience=1, checkpoint_every=0, seed=0, num_threads=1)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide BERT with the packaged MiniLM tokenizer (what test_run_store uses)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_dir

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(d)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def mail(spam_records):
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records]
    return texts, [r["label"] for r in spam_records]


@pytest.fixture(scope="module")
def digit_rows(digits):
    X, y = digits
    idx = stratified_pick(y, 12, seed=2)
    return X[idx], y[idx]


def _config(backbone: str, **kw) -> FitConfig:
    return FitConfig.from_dict({"backbone": backbone, "strategy": "lora", "image_size": 32, "max_length": 24,
                                **FAST, **kw})


def _outputs(model: nn.Module, inputs: Inputs) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(inputs.batch(np.arange(len(inputs)))).float().numpy()


def test_only_adapters_and_head_are_handed_to_the_trainer(tiny_bert):
    backbone = create_backbone(f"hf:{tiny_bert}", max_length=24)
    targets, used = resolve_targets(backbone, None, "tiny")
    assert used == ["attention"] and len(targets) == 2 * 4  # query, key, value, attention.output.dense per layer
    model = TransferModel(backbone, 2)
    add_adapters(backbone, targets, LoraConfig(lora_r=4))
    groups = param_groups(model, TrainConfig(lr=1e-3), is_trainable)
    handed = {id(p) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    want = {n for n in named if ".lora_" in n or n.startswith("head.")}
    assert {n for n, p in named.items() if id(p) in handed} == want
    assert {n for n, p in named.items() if p.requires_grad} == want
    assert sum(".lora_A." in n for n in want) == len(targets)
    assert len(want) < len(named) / 3


def test_lora_fit_changes_only_the_adapted_weights_of_a_cnn(digit_rows):
    X, y = digit_rows
    r = fit(_config("packaged:efficientnet_lite0", lr=5e-3), train=from_arrays(X, y, value_max=16), save=False,
            progress=False)
    reference = create_backbone("packaged:efficientnet_lite0", image_size=32)
    targets = set(resolve_targets(reference, None, "lite0")[0])
    assert {t.rsplit(".", 1)[-1] for t in targets} == {"conv_pw", "conv_pwl", "conv_head"}
    before, after = reference.state_dict(), r.model.backbone.state_dict()
    assert before.keys() == after.keys(), "the returned backbone is not the plain (merged) architecture"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"{t}.weight" for t in targets}  # BatchNorm statistics and all other weights as they were
    lora = r.details["lora"]
    assert lora["layers"] == len(targets) and lora["merge_max_abs_diff"] < 1e-4
    assert 0 < r.details["trainable_fraction"] < 0.1
    assert r.details["trainable_params"] == lora["adapter_head_bytes_fp32"] // 4


def _adapted_and_merged(backbone, inputs: Inputs, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of the plain backbone, with random (non-zero) adapters, and after merging them."""
    model = TransferModel(backbone, 3).eval()
    plain = _outputs(model.backbone, inputs)
    targets, _ = resolve_targets(backbone, None, "test")
    torch.backends.mha.set_fastpath_enabled(False)  # as fit_lora does: torch's fused encoder path skips adapters
    try:
        lora = add_adapters(backbone, targets, LoraConfig(lora_r=4, lora_alpha=8))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in backbone.named_parameters():
                if ".lora_B." in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        adapted = _outputs(model.backbone, inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    model.backbone = merge_adapters(lora)
    assert not any(type(m).__module__.startswith("peft") for m in model.modules())
    return plain, adapted, _outputs(model.backbone, inputs)


@pytest.mark.parametrize("spec", ["packaged:efficientnet_lite0", "scratch:cnn", "scratch:transformer", "tiny-bert"])
def test_merged_model_equals_the_adapted_one_on_real_inputs(spec, tiny_bert, mail, digit_rows):
    text = spec in ("tiny-bert", "scratch:transformer")
    backbone = create_backbone(f"hf:{tiny_bert}" if spec == "tiny-bert" else spec, image_size=32, max_length=24,
                               **({"seed": 0} if spec.startswith("scratch") else {}))
    data = from_arrays(mail[0][:24]) if text else from_arrays(digit_rows[0][:24], value_max=16)
    plain, adapted, merged = _adapted_and_merged(backbone, Inputs(data, backbone))
    assert np.abs(adapted - plain).max() > 0.05 * np.abs(plain).max(), "the adapters had no effect"
    assert np.abs(merged - adapted).max() < 1e-4


def test_a_lora_run_loads_and_predicts_identically_without_peft(tiny_bert, mail, tmp_path):
    texts, labels = mail
    cfg = _config(f"hf:{tiny_bert}", lr=2e-3, runs_dir=str(tmp_path / "runs"), name="lora-bert")
    r = fit(cfg, train=from_arrays(texts[:100], labels[:100]), progress=False)
    metrics = json.loads((r.run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert 0 < metrics["details"]["trainable_fraction"] < 0.5
    held = from_arrays(texts[100:130])
    want = _outputs(r.model, Inputs(held, r.model.backbone))
    np.save(tmp_path / "held.npy", np.array(texts[100:130], dtype=object), allow_pickle=True)
    script = f"""
import sys, numpy as np, torch
class NoPeft:
    def find_spec(self, name, path=None, target=None):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("peft is blocked in this test")
sys.meta_path.insert(0, NoPeft())
from transferkit.data import from_arrays
from transferkit.features.inputs import Inputs
from transferkit.runs import load_run
run = load_run({str(r.run_dir)!r})
held = from_arrays(list(np.load({str(tmp_path / 'held.npy')!r}, allow_pickle=True)))
with torch.inference_mode():
    out = run.model.eval()(Inputs(held, run.model.backbone).batch(np.arange(len(held)))).float().numpy()
assert not any(m.startswith("peft") for m in sys.modules), "peft was imported"
np.save({str(tmp_path / 'got.npy')!r}, out)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), want, atol=1e-5, rtol=0)


def _no_training(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(FitContext, "fit_model", boom)


def test_a_target_pattern_that_matches_nothing_fails_before_training(monkeypatch, tiny_bert, mail):
    _no_training(monkeypatch)
    with pytest.raises(ConfigError) as e:
        fit(_config(f"hf:{tiny_bert}", lora_targets="query,vaule"), train=from_arrays(*mail), save=False,
            progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "'vaule'" in msg and "Did you mean 'value'?" in msg
    assert "encoder.layer.*.attention.self.value" in msg  # the candidates it lists


@pytest.mark.parametrize("given", [{"lora_r": 0}, {"lora_r": -4}, {"lora": {"lora_r": 0}}])
def test_rank_must_be_positive(given, monkeypatch, digit_rows):
    _no_training(monkeypatch)
    with pytest.raises(ConfigError, match=re.escape("'lora_r' parameter of FitConfig must be an integer in [1,")):
        fit(_config("scratch:cnn", **given), train=from_arrays(*digit_rows, value_max=16), save=False,
            progress=False)


def test_freeze_is_refused_with_lora(monkeypatch, digit_rows):
    _no_training(monkeypatch)
    with pytest.raises(ConfigError, match="'freeze' parameter of strategy lora must be 0"):
        fit(_config("scratch:cnn", freeze=2), train=from_arrays(*digit_rows, value_max=16), save=False,
            progress=False)


def test_a_lora_run_keeps_its_unmerged_adapter_which_rebuilds_the_model(tiny_bert, mail, tmp_path):
    texts, labels = mail
    cfg = _config(f"hf:{tiny_bert}", lr=2e-3, runs_dir=str(tmp_path / "runs"), name="lora-adapter")
    r = fit(cfg, train=from_arrays(texts[:100], labels[:100]), progress=False)
    d = r.run_dir / "adapter"
    peft_config = json.loads((d / "adapter_config.json").read_text(encoding="utf-8"))
    assert peft_config["r"] == cfg.lora.lora_r and peft_config["peft_type"] == "LORA"
    from safetensors.torch import load_file

    tensors = load_file(str(d / "adapter_model.safetensors"))
    assert tensors and all(".lora_" in k for k in tensors), "adapter weights only, in PEFT's names"
    assert (d / "adapter_model.safetensors").stat().st_size < (r.run_dir / "model.safetensors").stat().st_size / 3
    held = Inputs(from_arrays(texts[100:130]), r.model.backbone)
    rebuilt = load_unmerged(r.run_dir)
    assert any(".lora_" in n for n, _ in rebuilt.named_parameters()), "adapters in place, not merged"
    np.testing.assert_allclose(_outputs(rebuilt, held), _outputs(r.model, held), atol=1e-4, rtol=0)
    # the run's integrity record covers the adapter files
    files = json.loads((r.run_dir / "run.json").read_text(encoding="utf-8"))["files"]
    assert "adapter/adapter_model.safetensors" in files and "adapter/head.safetensors" in files
    # a damaged adapter file is a one-line error naming the folder
    (d / "head.safetensors").write_bytes(b"not safetensors")
    from transferkit.errors import DataError

    with pytest.raises(DataError, match=r"The adapter in '.*adapter' cannot be read .*restore the run folder"):
        load_unmerged(r.run_dir)


def test_load_unmerged_of_a_run_without_adapter_is_a_one_line_error(tmp_path, digit_rows):
    X, y = digit_rows
    cfg = FitConfig.from_dict({"backbone": "scratch:cnn", "strategy": "linear-probe", "image_size": 16,
                               "runs_dir": str(tmp_path / "runs"), "name": "probe", **FAST})
    r = fit(cfg, train=from_arrays(X, y, value_max=16), progress=False)
    with pytest.raises(ConfigError, match="has no unmerged adapter .*only runs of strategy lora keep one"):
        load_unmerged(r.run_dir)
