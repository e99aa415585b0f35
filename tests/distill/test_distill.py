"""``transferkit distill``: the loss (T**2 scaling, alpha = 1 is plain cross-entropy, unlabelled rows get soft targets
only, feature matching), teacher logits computed once (then read from the feature cache), a student cut to the
teacher's first layer that copies the teacher's weights, the student run loading and predicting without its
teacher, lineage naming the teacher, every bad input as a one-line error before any training, and an interrupted
run resuming to the uninterrupted weights. Teachers: a 2-layer tiny BERT fine-tuned on 80 SpamAssassin e-mails
(length 16), and a scratch CNN on 240 scikit-learn digits at 16 px."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.conftest import write_jsonl
from tests.helpers import cli, one_line_error

TRAIN = ["--epochs", 2, "--min-steps", 0, "--batch-size", 16, "--lr", 1e-3, "--num-threads", 1]
TEXT = ["--text-column", "subject,body", "--max-length", 16, *TRAIN]


# -- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_dir

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(d)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def mail(tmp_path_factory, spam_records) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("distill_mail")
    renamed = [{**r, "label": {"ham": "good", "spam": "bad"}[r["label"]]} for r in spam_records[:40]]
    return {"train": write_jsonl(d / "train.jsonl", spam_records[:80]),
            "unlabelled": write_jsonl(d / "unlabelled.jsonl", spam_records[80:120]),  # its labels are ignored
            "new": write_jsonl(d / "new.jsonl", spam_records[120:140]),
            "relabelled": write_jsonl(d / "relabelled.jsonl", renamed)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distill_runs")


@pytest.fixture(scope="module")
def text_teacher(runs, mail, tiny_bert) -> Path:
    from transferkit.config import FitConfig, TrainConfig
    from transferkit.pipeline import fit

    cfg = FitConfig(backbone=f"hf:{tiny_bert}", strategy="fine-tune", train=str(mail["train"]),
                    text_column="subject,body", max_length=16, num_threads=1, runs_dir=str(runs), name="text-teacher",
                    training=TrainConfig(epochs=2, min_steps=0, batch_size=16, lr=1e-3))
    return fit(cfg, progress=False).run_dir


@pytest.fixture(scope="module")
def digit_sets(digits):
    from transferkit.data import from_arrays

    X, y = digits
    idx = np.random.default_rng(0).permutation(len(y))
    return {"train": from_arrays(X[idx[:240]], y[idx[:240]], value_max=16.0),
            "unlabelled": from_arrays(X[idx[240:340]], value_max=16.0)}


@pytest.fixture(scope="module")
def image_teacher(runs, digit_sets) -> Path:
    from transferkit.config import FitConfig, TrainConfig
    from transferkit.pipeline import fit

    cfg = FitConfig(backbone="scratch:cnn", strategy="fine-tune", image_size=16, num_threads=1, runs_dir=str(runs),
                    name="image-teacher", training=TrainConfig(epochs=3, min_steps=0, batch_size=32, lr=3e-3))
    return fit(cfg, train=digit_sets["train"], progress=False).run_dir


@pytest.fixture(scope="module")
def text_student(runs, mail, text_teacher) -> Path:
    rc = cli("--quiet", "distill", "--teacher", text_teacher, "--student-layers", 1, "--train", mail["train"],
             "--unlabelled", mail["unlabelled"], "--feature-loss", 0.5, *TEXT, "--runs-dir", runs,
             "--name", "text-student")
    assert rc == 0
    return runs / "text-student"


# -- the loss ----------------------------------------------------------------------------------------------------
def test_soft_target_loss_is_t_squared_times_the_kl_of_the_softened_distributions():
    from transferkit.distill.losses import soft_target_loss

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    for T in (1.0, 3.0):
        p, q = torch.softmax(t / T, 1).numpy(), torch.softmax(s / T, 1).numpy()
        expected = T * T * float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))
        assert float(soft_target_loss(s, t, T)) == pytest.approx(expected, rel=1e-5)
    assert float(soft_target_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)  # equal logits: no loss


def test_t_squared_keeps_the_gradient_scale_across_temperatures():
    """Hinton et al. §2: the soft gradients scale as 1/T**2, which the T**2 factor cancels; without it the gradient at
    T = 8 would be 4x smaller than at T = 4."""
    from transferkit.distill.losses import soft_target_loss

    g = torch.Generator().manual_seed(1)
    t = torch.randn(64, 10, generator=g)
    t = t - t.mean(1, keepdim=True)
    s0 = torch.randn(64, 10, generator=g)
    s0 = s0 - s0.mean(1, keepdim=True)
    norms = {}
    for T in (4.0, 8.0):
        s = s0.clone().requires_grad_(True)
        soft_target_loss(s, t, T).backward()
        norms[T] = float(s.grad.norm())
    assert norms[8.0] / norms[4.0] == pytest.approx(1.0, abs=0.1)


def test_alpha_one_is_plain_cross_entropy_and_unlabelled_rows_get_soft_targets_only():
    from transferkit.distill.losses import UNLABELLED, distillation_loss

    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(distillation_loss(s, t, y, 4.0, 1.0)["loss"], F.cross_entropy(s, y))
    mixed = distillation_loss(s, t, y, 4.0, 0.3)
    assert float(mixed["loss"]) == pytest.approx(0.3 * float(F.cross_entropy(s, y)) + 0.7 * float(mixed["soft"]))
    y_part = torch.tensor([0, 1, UNLABELLED, UNLABELLED, 1, 2])
    part = distillation_loss(s, t, y_part, 4.0, 0.5)
    keep = y_part >= 0
    assert float(part["hard"]) == pytest.approx(float(F.cross_entropy(s[keep], y_part[keep])))
    assert float(part["soft"]) == pytest.approx(float(mixed["soft"]))  # every row has soft targets
    none = distillation_loss(s, t, torch.full((6,), UNLABELLED), 4.0, 0.5)
    assert float(none["hard"]) == 0.0 and float(none["loss"]) == pytest.approx(0.5 * float(mixed["soft"]))


def test_feature_matching_adds_the_weighted_mse_of_learned_projected_features():
    from transferkit.backbones import create_backbone
    from transferkit.distill.objective import DistillObjective
    from transferkit.engine.model import TransferModel

    torch.manual_seed(0)
    model = TransferModel(create_backbone("scratch:cnn", image_size=16), 3)
    x = torch.randn(4, 3, 16, 16)
    target = {"labels": torch.tensor([0, 1, 2, -1]), "logits": torch.randn(4, 3), "features": torch.randn(4, 8)}
    plain = DistillObjective(2.0, 0.5)(model, (x, target))
    obj = DistillObjective(2.0, 0.5, feature_weight=0.25, student_dim=256, teacher_dim=8)
    out = obj(model, (x, target))
    match = float(F.mse_loss(obj.projection(model.backbone(x)), target["features"]).detach())
    assert float(out["feature"].detach()) == pytest.approx(match, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(float(plain["loss"].detach()) + 0.25 * match, rel=1e-5)
    out["loss"].backward()
    assert obj.projection.weight.grad is not None and float(obj.projection.weight.grad.abs().sum()) > 0
    same = DistillObjective(2.0, 0.5, feature_weight=1.0, student_dim=8, teacher_dim=8)
    assert torch.equal(same.projection.weight, torch.eye(8))  # equal widths: starts as the identity


# -- students ----------------------------------------------------------------------------------------------------
def test_student_layers_keep_the_teachers_first_layers_and_their_weights(text_teacher):
    from transferkit.distill.students import truncated_encoder
    from transferkit.runs import load_run

    teacher = load_run(text_teacher)
    student = truncated_encoder(teacher, 1)
    assert len(student.model.encoder.layer) == 1 and student.model.config.num_hidden_layers == 1
    assert len(teacher.model.backbone.model.encoder.layer) == 2  # the teacher is untouched
    t_state, s_state = teacher.model.backbone.model.state_dict(), student.model.state_dict()
    assert any(k.startswith("encoder.layer.0.") for k in s_state)
    assert not any(k.startswith("encoder.layer.1.") for k in s_state)
    assert all(torch.equal(v, t_state[k]) for k, v in s_state.items())
    assert student.meta.max_length == 16 and student.meta.extra["truncated"]["of"] == 2


def test_the_student_run_loads_and_predicts_without_its_teacher_and_names_it(text_student, text_teacher, mail,
                                                                             tmp_path, capsys):
    from transferkit.runs import load_run

    info = json.loads((text_student / "run.json").read_text())
    assert info["kind"] == "distill" and info["teacher"] == str(text_teacher)
    assert info["lineage"][0]["run"] == str(text_teacher) and info["lineage"][0]["kind"] == "teacher"
    m = json.loads((text_student / "metrics.json").read_text())
    cmp_ = m["distill"]
    assert cmp_["student"]["parameters"] < cmp_["teacher"]["parameters"]
    assert cmp_["student"]["file_bytes"] < cmp_["teacher"]["file_bytes"]
    for key in ("teacher", "student", "no_distillation"):
        assert 0 <= cmp_[key]["macro_f1"] <= 1
        assert {"b1", "b32"} <= set(cmp_[key]["latency"]) and cmp_[key]["latency"]["b32"]["seconds"] > 0
    assert m["details"]["sizes"]["unlabelled"] == 40 and m["test"]["macro_f1"] == cmp_["student"]["macro_f1"]
    report = (text_student / "report.md").read_text()
    assert "| student (distilled) |" in report and "| student without distillation |" in report
    assert f"run `{text_teacher}`" in report
    hidden = text_teacher.with_name("hidden-teacher")
    text_teacher.rename(hidden)  # the student needs nothing of its teacher
    try:
        run = load_run(text_student)
        assert len(run.model.backbone.model.encoder.layer) == 1
        assert cli("predict", text_student, mail["new"], "--output", tmp_path / "pred.csv") == 0
        assert len((tmp_path / "pred.csv").read_text().strip().splitlines()) == 21
        assert cli("evaluate", text_student, mail["new"], "--out", tmp_path / "eval") == 0
    finally:
        hidden.rename(text_teacher)
    out = capsys.readouterr().out
    assert "macro_f1=" in out


def test_teacher_logits_are_computed_once_then_read_from_the_cache(image_teacher, digit_sets, tmp_path,
                                                                   monkeypatch):
    from transferkit.distill import DistillConfig, distill
    from transferkit.distill.teacher import TeacherView
    from transferkit.features import FeatureCache

    calls = []
    real = TeacherView.source_logits

    def counted(self, batch):
        calls.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(TeacherView, "source_logits", counted)
    cfg = DistillConfig(teacher=str(image_teacher), student="scratch:cnn", image_size=16, temperature=4.0,
                        num_threads=1)
    cfg.training.epochs, cfg.training.min_steps, cfg.training.batch_size, cfg.training.lr = 3, 0, 32, 3e-3
    cache = FeatureCache(tmp_path / "cache")
    r = distill(cfg, train=digit_sets["train"], unlabelled=digit_sets["unlabelled"], progress=False, save=False,
                cache=cache)
    n = r.details["sizes"]["labelled"] + r.details["sizes"]["unlabelled"]
    assert r.details["sizes"]["unlabelled"] == 100 and sum(calls) == n  # one pass over the transfer set
    assert len(calls) == math.ceil(n / 64) and r.details["teacher_outputs"]["cache_hits"] == 0
    assert r.comparison["no_distillation"] is not None and r.baseline is not None
    calls.clear()
    again = distill(cfg, train=digit_sets["train"], unlabelled=digit_sets["unlabelled"], progress=False, save=False,
                    cache=cache)
    assert calls == [] and again.details["teacher_outputs"]["cache_hits"] == 1
    for a, b in zip(r.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same soft targets and seed: the same student


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("fake_pretrain") / "mlm"
    p.mkdir()
    (p / "run.json").write_text(json.dumps({"kind": "pretrain", "status": "complete"}))
    return p


BAD = [
    ("image-teacher", ["--student", "scratch:cnn", "--train", "{train}"], "takes images but the training data"),
    ("text-teacher", ["--student-layers", 1, "--train", "{relabelled}"], "labels the teacher"),
    ("text-teacher", ["--student", "timm:not_a_real_net", "--train", "{train}"], "Unknown timm model"),
    ("text-teacher", ["--student", "nosuch:x", "--train", "{train}"], "Unknown backbone source 'nosuch'"),
    ("text-teacher", ["--student", "hf:/no/such/dir", "--train", "{train}"], "Cannot load Hugging Face model"),
    ("text-teacher", ["--student", "scratch:cnn", "--train", "{train}"], "Student 'scratch:cnn' takes images"),
    ("text-teacher", ["--student", "classical:tfidf", "--train", "{train}"], "classical featuriser"),
    ("text-teacher", ["--student-layers", 2, "--train", "{train}"], "an integer in [1, 1] (teacher"),
    ("text-teacher", ["--student-layers", 0, "--train", "{train}"], "an integer >= 1"),
    ("text-teacher", ["--student", "scratch:cnn", "--student-layers", 1, "--train", "{train}"], "cannot apply"),
    ("text-teacher", ["--train", "{train}"], "No student"),
    ("text-teacher", ["--student-layers", 1, "--train", "{train}", "--alpha", 1.5], "'alpha' parameter"),
    ("text-teacher", ["--student-layers", 1, "--train", "{train}", "--temperature", 0], "'temperature' parameter"),
    ("image-teacher", ["--student-layers", 1, "--train", "{train}"], "not a Hugging Face transformer"),
    ("pretrain", ["--student-layers", 1, "--train", "{train}"], "is a pretraining run"),
    ("missing", ["--student-layers", 1, "--train", "{train}"], "does not exist"),
]


@pytest.mark.parametrize("teacher, args, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_is_a_one_line_error_before_any_training(teacher, args, message, text_teacher, image_teacher,
                                                           pretrain_run, mail, runs, tmp_path, capsys, monkeypatch):
    from transferkit.engine import loop

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(loop, "train_model", no_training)
    path = {"text-teacher": text_teacher, "image-teacher": image_teacher, "pretrain": pretrain_run,
            "missing": runs / "no-such-run"}[teacher]
    values = [str(a).format(train=mail["train"], relabelled=mail["relabelled"]) for a in args]
    rc = cli("--quiet", "distill", "--teacher", path, *values, *TEXT, "--runs-dir", tmp_path, "--name", "bad")
    err = one_line_error(capsys.readouterr().err)
    assert rc == 2 and message in err, err
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".bad.partial").exists()


# -- resume ------------------------------------------------------------------------------------------------------
def test_an_interrupted_then_crashed_distillation_resumes_to_the_uninterrupted_weights(text_teacher, mail, runs,
                                                                                       capsys, monkeypatch):
    """SIGTERM at step 3 of the distillation phase (exit 130 and the resume command), then a crash at step 5 of the
    no-distillation phase (the distillation phase is finished and read back); the resumed run ends bit-identical to
    an uninterrupted one (CPU, one thread)."""
    from transferkit.engine import callbacks

    common = ["--quiet", "distill", "--teacher", text_teacher, "--student-layers", 1, "--train", mail["train"],
              "--unlabelled", mail["unlabelled"], *TEXT, "--checkpoint-every", 2, "--runs-dir", runs]
    assert cli(*common, "--name", "ref") == 0
    partial = runs / ".resumed.partial"
    monkeypatch.setenv("TRANSFERKIT_FAULT", "term-at-step:3")
    assert cli(*common, "--name", "resumed") == 130
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("transferkit:")]
    assert len(err) == 1 and "step 3 of" in err[0]
    assert err[0].endswith(f"Resume with: transferkit distill --resume {(runs / 'resumed').as_posix()}")
    monkeypatch.delenv("TRANSFERKIT_FAULT")
    real = callbacks.fault_point

    def crash(kind: str, value: int) -> None:
        if kind == "at-step" and value == 5 and (partial / "checkpoint" / "student" / "done.json").exists():
            raise RuntimeError("simulated crash")
        real(kind, value)

    monkeypatch.setattr(callbacks, "fault_point", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli("--quiet", "distill", "--resume", runs / "resumed")
    assert json.loads((partial / "checkpoint" / "no-distillation" / "latest.json").read_text())["step"] == 4
    monkeypatch.setattr(callbacks, "fault_point", real)
    assert cli("--quiet", "distill", "--resume", runs / "resumed") == 0
    assert not partial.exists()
    a, b = (load_file(str(runs / n / "model.safetensors")) for n in ("ref", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((runs / n / "history.json").read_text()) for n in ("ref", "resumed"))
    strip = [{k: v for k, v in e.items() if k not in ("seconds", "examples_per_s")} for e in ha["no_distillation"]]
    assert strip == [{k: v for k, v in e.items() if k not in ("seconds", "examples_per_s")}
                     for e in hb["no_distillation"]]
    ma, mb = (json.loads((runs / n / "metrics.json").read_text())["distill"] for n in ("ref", "resumed"))
    assert ma["no_distillation"]["macro_f1"] == mb["no_distillation"]["macro_f1"]
