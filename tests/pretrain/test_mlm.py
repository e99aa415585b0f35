"""``transferkit pretrain``: continued masked-LM pretraining of the packaged MiniLM on 40 short SpamAssassin e-mails
(unlabelled: their label column is ignored), then ``fit --backbone run:PATH`` on it; one-line errors for unusable
data and for using a pretraining run as a classifier; a run interrupted and crashed mid-way resumes to bit-identical
weights."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import write_jsonl
from tests.helpers import cli, one_line_error

STEPS = 6
# 40 texts -> 38 train + 2 held out; batch 8 -> 5 batches per epoch, so step 6 is the first of epoch 2
ARGS = ["--text-column", "subject,body", "--max-steps", STEPS, "--max-length", 32, "--batch-size", 8, "--lr", 1e-4,
        "--num-threads", 1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, spam_records) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pretrain_data")
    return {"unlabelled": write_jsonl(d / "mail.jsonl", spam_records[:40]),  # has a label column: ignored
            "labelled": write_jsonl(d / "labelled.jsonl", spam_records[40:100]), "dir": d}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pretrain_cwd") / "runs"


@pytest.fixture(scope="module")
def ref_run(runs, corpus) -> Path:
    rc = cli("--quiet", "pretrain", "--data", corpus["unlabelled"], *ARGS, "--checkpoint-every", 0, "--runs-dir", runs,
             "--name", "ref")
    assert rc == 0
    return runs / "ref"


def _encoder(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "encoder" / "model.safetensors"))


def test_pretrain_run_holds_an_adapted_encoder_and_its_record(ref_run, corpus):
    info = json.loads((ref_run / "run.json").read_text())
    assert info["kind"] == "pretrain" and info["objective"] == "mlm" and info["status"] == "complete"
    assert info["steps"] == STEPS and info["stopped"].startswith("step budget") and info["seed"] == 0
    assert info["backbone"] == "packaged:minilm-l6" and info["lineage"] == []  # the source backbone, no parent runs
    assert info["head"]["init"] == "untrained" and info["head"]["tied"]
    assert "started untrained" in info["head"]["note"]
    assert "started untrained" in (ref_run / "pretrain.log").read_text()
    d = info["data"]
    assert d["texts"] == 40 and d["train"] + d["heldout"] == 40 and 1 <= d["heldout"] <= 4
    assert len(d["fingerprint"]) == 24 and d["path"] == str(corpus["unlabelled"])
    curve = [p["loss"] for p in info["loss_curve"]]
    assert len(curve) == STEPS and all(math.isfinite(v) for v in curve)
    assert curve[-1] < curve[0]  # the untrained head starts near ln(vocabulary) = 10.3
    ho = info["heldout"]
    assert ho["before"]["masked_tokens"] == ho["after"]["masked_tokens"] > 0  # the same seeded held-out masks
    assert ho["after"]["loss"] < ho["before"]["loss"]
    assert 0 <= ho["after"]["accuracy"] <= 1
    assert yaml.safe_load((ref_run / "pretrain.yaml").read_text())["max_steps"] == STEPS
    # the encoder in Hugging Face format: weights moved, the unused pooler kept as it was
    from transferkit.backbones.packaged import minilm_dir

    enc, src = _encoder(ref_run), load_file(str(minilm_dir() / "model.safetensors"))
    assert (ref_run / "encoder" / "config.json").exists() and (ref_run / "encoder" / "tokenizer_config.json").exists()
    common = [k for k in enc if k in src]
    assert set(enc) == set(src) - {"embeddings.position_ids"}  # (a buffer older checkpoints stored)
    changed = [k for k in common if not torch.equal(enc[k], src[k])]
    assert any("encoder.layer.5" in k for k in changed) and "embeddings.word_embeddings.weight" in changed
    assert not any(k.startswith("pooler.") for k in changed)
    assert not (ref_run.parent / ".ref.partial").exists() and not (ref_run / "checkpoint").exists()


def test_fit_on_the_pretraining_run_uses_its_encoder_and_keeps_lineage(ref_run, corpus, tmp_path, capsys):
    rc = cli("--quiet", "fit", "--train", corpus["labelled"], "--text-column", "subject,body",
             "--backbone", f"run:{ref_run}", "--strategy", "linear-probe", "--max-length", 32, "--num-threads", 1,
             "--probe-grid", "0.1,1", "--runs-dir", tmp_path, "--name", "lp")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith(f"linear-probe on run:{ref_run}: test macro_f1 = ")
    run = tmp_path / "lp"
    info = json.loads((run / "run.json").read_text())
    parent = info["lineage"][0]
    assert parent["run"] == str(ref_run) and parent["kind"] == "pretrain" and parent["objective"] == "mlm"
    assert parent["backbone"] == "packaged:minilm-l6" and parent["steps"] == STEPS
    assert parent["train"] == str(corpus["unlabelled"])
    assert yaml.safe_load((run / "config.yaml").read_text())["backbone"] == f"run:{ref_run}"
    # the backbone it trained on is the pretrained encoder, and the fit run stands alone (rebuilt offline)
    from transferkit.runs import load_run

    loaded = load_run(run)
    enc = _encoder(ref_run)
    state = loaded.model.backbone.model.state_dict()
    assert all(torch.equal(state[k], enc[k]) for k in enc)
    assert loaded.model.backbone.meta.spec == f"run:{ref_run}"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_pretraining_run_is_no_classifier(ref_run, corpus, command, capsys):
    rc = cli(command, ref_run, corpus["labelled"])
    err = one_line_error(capsys.readouterr().err)
    assert rc == 2
    assert "is a pretraining run" in err and f"fit --backbone run:{ref_run.as_posix()}" in err


def test_unusable_data_gives_one_line_errors(tmp_path, capsys, mnist_folder):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    short = tmp_path / "short.csv"
    short.write_text("text,label\n" + "".join(f"{w},x\n" for w in ["a", "the", "hi", "", "ok"] * 8))
    cases = [(empty, "No text in"), (header_only, "has no rows"), (mnist_folder, "is an image folder"),
             (tmp_path / "missing.jsonl", "does not exist"),
             (short, "All 32 texts in"), (short, "fewer than 2 maskable tokens")]
    for path, message in cases:
        rc = cli("--quiet", "pretrain", "--data", path, "--max-steps", 1, "--num-threads", 1,
                 "--runs-dir", tmp_path / "runs", "--name", "bad")
        err = one_line_error(capsys.readouterr().err)
        assert rc == 2 and message in err, (path, err)
    assert not (tmp_path / "runs" / "bad").exists() and not (tmp_path / "runs" / ".bad.partial").exists()
    rc = cli("--quiet", "pretrain", "--data", short, "--objective", "mln")
    err = one_line_error(capsys.readouterr().err)
    assert rc == 2 and "Did you mean 'mlm'" in err


def test_time_budget_stops_cleanly_and_still_writes_the_run(corpus, tmp_path):
    import transferkit

    cfg = transferkit.PretrainConfig(data=str(corpus["unlabelled"]), text_column="subject,body", max_steps=50,
                                     max_length=16, max_minutes=1e-6, num_threads=1, runs_dir=str(tmp_path),
                                     name="budget")
    cfg.training.batch_size = 4
    result = transferkit.pretrain(cfg, progress=False)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["steps"] == result.metrics["steps"] == 1 and info["stopped"].startswith("time budget")
    assert (result.run_dir / "encoder" / "model.safetensors").exists()


def test_interrupted_and_crashed_pretraining_resumes_to_the_uninterrupted_weights(ref_run, corpus, capsys,
                                                                                  monkeypatch):
    """SIGTERM at step 3 (exit 130, a checkpoint there, the resume command), then a crash at step 5 (the last
    checkpoint is at step 4; the crash is an exception in-process, where SIGKILL would end pytest: the engine's
    SIGKILL tests are tests/engine/test_kill_resume.py); the resumed run redoes step 5 with the same batch, masks
    and dropout and ends bit-identical to the uninterrupted run (CPU, one thread)."""
    from transferkit.engine import callbacks

    runs = ref_run.parent
    args = ["--quiet", "pretrain", "--data", corpus["unlabelled"], *ARGS, "--checkpoint-every", 2,
            "--runs-dir", runs, "--name", "crash"]
    partial = runs / ".crash.partial"
    monkeypatch.setenv("TRANSFERKIT_FAULT", "term-at-step:3")
    assert cli(*args) == 130
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("transferkit:")]
    assert len(err) == 1 and err[0].startswith("transferkit: terminated (SIGTERM) at epoch 1, step 3 of 6")
    assert err[0].endswith(f"Resume with: transferkit pretrain --resume {(runs / 'crash').as_posix()}")
    assert json.loads((partial / "checkpoint" / "latest.json").read_text())["step"] == 3
    monkeypatch.delenv("TRANSFERKIT_FAULT")

    assert cli(*args) == 2  # a new run of that name points at the resumable one
    assert "transferkit pretrain --resume" in one_line_error(capsys.readouterr().err)
    assert cli("--quiet", "pretrain", "--resume", runs / "crash", "--lr", 0.5) == 2
    assert "lr" in one_line_error(capsys.readouterr().err)

    real = callbacks.fault_point

    def crash(kind: str, value: int) -> None:
        if kind == "at-step" and value == 5:
            raise RuntimeError("simulated crash")
        real(kind, value)

    monkeypatch.setattr(callbacks, "fault_point", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli("--quiet", "pretrain", "--resume", runs / "crash")
    assert json.loads((partial / "checkpoint" / "latest.json").read_text())["step"] == 4
    monkeypatch.setattr(callbacks, "fault_point", real)

    assert cli("--quiet", "pretrain", "--resume", runs / "crash") == 0
    assert not partial.exists() and not (runs / "crash" / "checkpoint").exists()
    a, b = _encoder(ref_run), _encoder(runs / "crash")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    ia, ib = (json.loads((runs / n / "run.json").read_text()) for n in ("ref", "crash"))
    assert ia["loss_curve"] == ib["loss_curve"] and ia["heldout"] == ib["heldout"]
    assert ib["steps"] == STEPS and ib["training"]["checkpoint_every"] == 2


def test_two_processes_pretrain_what_one_does_and_only_rank0_writes(ref_run, corpus, tmp_path):
    """`pretrain --nproc-per-node 2` (torchrun, gloo, 1 thread each): every process masks the global batch as one
    process does and trains its share (4 + 4 of 8 rows), with each share's loss weighted by its masked tokens;
    rank 0 alone writes one run. Weights agree with the one-process run to float noise amplified by AdamW
    (tests/engine/test_ddp.py explains the size), the loss curve to 1%, and the held-out score of the starting
    weights exactly (rank 0 evaluates the same seeded masks)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [str(a) for a in ["--quiet", "pretrain", "--data", corpus["unlabelled"], *ARGS, "--checkpoint-every", 0,
                             "--runs-dir", "runs", "--name", "ddp", "--nproc-per-node", 2]]
    done = subprocess.run([sys.executable, "-m", "transferkit.cli.main", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run: ") == 1  # rank 0 alone reports
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]
    ia, ib = (json.loads((r / "run.json").read_text()) for r in (ref_run, tmp_path / "runs" / "ddp"))
    assert ib["steps"] == STEPS and ib["heldout"]["before"] == ia["heldout"]["before"]
    assert ib["environment"]["processes"] == "2" and ia["environment"]["processes"] == "1"
    # dropout draws differ per process (measured: losses within 1.9%, weights 0.25% apart after 6 steps)
    for x, y in zip(ia["loss_curve"], ib["loss_curve"], strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=0.04)
    a, b = _encoder(ref_run), _encoder(tmp_path / "runs" / "ddp")
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in a)
    den = sum(float(((a[k].double()) ** 2).sum()) for k in a)
    assert (num / den) ** 0.5 < 0.025
    assert ib["heldout"]["after"]["loss"] == pytest.approx(ia["heldout"]["after"]["loss"], rel=0.04)


def test_shares_of_a_masked_batch_add_up_to_the_global_masked_token_loss(spam_records):
    """What makes the two-process run train what one does: each process masks the whole global batch as one
    process would, keeps its rows, and its loss is scaled so that the trainer's row-weighted sum over shares is
    the global mean over masked tokens (3 shares of 2, 3 and 3 rows with unequal masked-token counts; dropout
    off)."""
    from transferkit.backbones import create_backbone
    from transferkit.distributed.ddp import DistEnv, share_of
    from transferkit.pretraining import mlm as M

    bb = create_backbone("packaged:minilm-l6", max_length=32)
    tok = bb.preprocess.tokenizer
    corpus = M.tokenise([f"{r['subject']} {r['body'][:200]}" for r in spam_records[:8]], tok, 32, "test")
    model, _ = M.build_mlm(bb, 0)
    model.eval()
    masks, objective = M.MaskedBatches(tok, 0.15, 0), M.MLMObjective()
    item = M.MLMPlan(len(corpus), 8, 1, 0).epoch(1)[0]
    whole_batch = M.collate_share(item, corpus.examples, masks)
    with torch.no_grad():
        whole = float(objective(model, whole_batch, None)["loss"])
        total, rows, tokens = 0.0, [], []
        for r in range(3):
            share, mine = share_of(item, DistEnv(r, 3, r, 3))
            batch = M.collate_share(share, corpus.examples, masks)
            lo = sum(rows)
            assert torch.equal(batch["input_ids"], whole_batch["input_ids"][lo:lo + mine])  # the same masks
            total += mine / len(item["idx"]) * float(objective(model, batch, None)["loss"])
            rows.append(mine)
            tokens.append(int((batch["labels"] != -100).sum()))
    assert rows == [2, 3, 3] and len(set(tokens)) > 1
    assert total == pytest.approx(whole, rel=1e-5)
