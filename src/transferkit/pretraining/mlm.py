"""Masked language modelling on the engine's trainer: the model (an ``AutoModelForMaskedLM`` around the encoder),
the tokenised corpus, the batch plan, seeded masks, the objective, the held-out evaluation and the callbacks that
keep the loss curve and the time budget across a resume."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.hf import HFTextBackbone
from ..engine.callbacks import Callback
from ..errors import ConfigError, DataError

MIN_MASKABLE = 2  # tokens besides the special ones ([CLS], [SEP]) a text needs to be masked and predicted


# -- the model ---------------------------------------------------------------------------------------------------
@dataclass
class MLMHead:
    """How the masked-LM head was initialised (recorded in the run)."""

    architecture: str
    head: str          # "loaded" (from the encoder's checkpoint) or "untrained" (initialised here)
    head_keys: list[str]
    tied: bool         # the decoder shares the word-embedding matrix

    def describe(self) -> str:
        tied = ", decoder tied to the word embeddings" if self.tied else ""
        if self.head == "loaded":
            return f"{self.architecture}: masked-LM head loaded from the encoder's checkpoint{tied}"
        return (f"{self.architecture}: the encoder's checkpoint has no masked-LM head weights; the head transform "
                f"({len(self.head_keys)} tensors) started untrained (seeded){tied}")


def _checkpoint_file(files_dir: str | None) -> Path | None:
    if not files_dir:
        return None
    f = Path(files_dir) / "model.safetensors"
    return f if f.exists() else None


def build_mlm(backbone: HFTextBackbone, seed: int) -> tuple[nn.Module, MLMHead]:
    """``AutoModelForMaskedLM`` from the encoder's config, holding the encoder's (current) weights.

    Head weights are taken from the encoder's checkpoint when it has them (e.g. bert-base-uncased); otherwise (the
    packaged MiniLM is a bare ``BertModel``) the head transform starts from a seeded initialisation. The decoder is
    tied to the word embeddings, as in BERT.
    """
    from transformers import AutoModelForMaskedLM

    config = copy.deepcopy(backbone.model.config)
    config.is_decoder = False
    torch.manual_seed(seed)
    try:
        mlm = AutoModelForMaskedLM.from_config(config)
    except ValueError as e:
        raise ConfigError(f"Backbone '{backbone.meta.spec}' ({type(backbone.model).__name__}) has no masked-LM "
                          f"variant in transformers: {str(e).splitlines()[0]}") from None
    mlm.tie_weights()
    base = mlm.base_model
    missing, unexpected = base.load_state_dict(backbone.model.state_dict(), strict=False)
    if missing or any(not k.startswith("pooler.") for k in unexpected):
        raise ConfigError(f"Cannot place the weights of '{backbone.meta.spec}' in {type(mlm).__name__}: missing "
                          f"{missing[:3]}, unexpected {unexpected[:3]}.")
    prefix = mlm.base_model_prefix + "."
    own = {k for k in mlm.state_dict() if not k.startswith(prefix)}
    out_emb, in_emb = mlm.get_output_embeddings(), mlm.get_input_embeddings()
    tied = out_emb is not None and out_emb.weight is in_emb.weight
    tied_keys = {k for k, v in mlm.state_dict().items()
                 if k in own and tied and v.data_ptr() == in_emb.weight.data_ptr()}
    head_keys = sorted(own - tied_keys)
    loaded = "untrained"
    ckpt = _checkpoint_file(backbone.meta.extra.get("files_dir"))
    if ckpt is not None:
        from safetensors import safe_open

        with safe_open(str(ckpt), framework="pt") as f:
            have = set(f.keys())
            if head_keys and all(k in have for k in head_keys):
                state = {k: f.get_tensor(k) for k in head_keys}
                mlm.load_state_dict(state, strict=False)
                loaded = "loaded"
    return mlm, MLMHead(type(mlm).__name__, loaded, head_keys, tied)


def copy_encoder_weights(mlm: nn.Module, encoder: nn.Module) -> None:
    """The trained encoder weights back into the backbone's own model (whose pooler, unused, stays as it was)."""
    missing, unexpected = encoder.load_state_dict(mlm.base_model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pooler.") for k in missing), (missing, unexpected)


# -- the corpus ------------------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    """Tokenised texts (truncated to ``max_length``), without those too short to mask."""

    examples: list[dict[str, list[int]]]
    kept: np.ndarray       # indices into the loaded texts
    dropped_short: int
    tokens: int            # maskable tokens in all kept texts

    def __len__(self) -> int:
        return len(self.examples)


def tokenise(texts: list[str], tokenizer: Any, max_length: int, origin: str) -> Corpus:
    """Tokenise; drop texts with fewer than :data:`MIN_MASKABLE` maskable tokens (a one-line error if that is all)."""
    if tokenizer.mask_token is None:
        raise ConfigError("The backbone's tokenizer has no mask token; masked-LM pretraining needs one.")
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    lengths = np.asarray([len(m) - sum(m) for m in enc["special_tokens_mask"]])
    kept = np.flatnonzero(lengths >= MIN_MASKABLE)
    if len(kept) == 0:
        raise DataError(f"All {len(texts)} texts in '{origin}' are too short for masked-LM pretraining: after "
                        f"tokenisation each has fewer than {MIN_MASKABLE} maskable tokens (the longest has "
                        f"{int(lengths.max())}). Give texts of at least {MIN_MASKABLE} tokens (words or word pieces).")
    if len(kept) < 2:
        raise DataError(f"Only 1 of the {len(texts)} texts in '{origin}' has at least {MIN_MASKABLE} maskable tokens; "
                        "pretraining needs at least 2 (one is held out to measure the masked-token accuracy).")
    examples = [{"input_ids": list(enc["input_ids"][i]), "special_tokens_mask": list(enc["special_tokens_mask"][i])}
                for i in kept]
    return Corpus(examples, kept, int(len(texts) - len(kept)), int(lengths[kept].sum()))


def heldout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: a seeded ``fraction`` (at least one text) held out for evaluation."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    k = min(n - 1, max(1, int(round(n * fraction))))
    return np.sort(order[k:]), np.sort(order[:k])


# -- batches and masks ---------------------------------------------------------------------------------------------
class MLMPlan:
    """Each epoch's batches: a permutation seeded by (seed, epoch), cut so that all epochs together hold exactly
    ``max_steps`` batches. Items carry their (epoch, batch) position, which seeds their masks."""

    def __init__(self, n: int, batch_size: int, max_steps: int, seed: int) -> None:
        self.n, self.batch_size, self.max_steps, self.seed = n, batch_size, max_steps, seed
        self.per_epoch = math.ceil(n / batch_size)
        self.epochs = math.ceil(max_steps / self.per_epoch)

    def epoch(self, epoch: int) -> list[dict[str, Any]]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        left = self.max_steps - (epoch - 1) * self.per_epoch
        out = []
        for b in range(min(self.per_epoch, max(0, left))):
            idx = perm[b * self.batch_size:(b + 1) * self.batch_size]
            # "rows": the whole global batch, kept when torchrun gives this process its share of "idx", so that
            # every process masks the global batch as one process would and takes its own rows of it
            out.append({"idx": idx, "n": len(idx), "epoch": epoch, "batch": b, "rows": idx})
        return out


def collate_share(item: dict[str, Any], examples: list[dict[str, list[int]]], masks: MaskedBatches
                  ) -> dict[str, torch.Tensor]:
    """The masked batch of a plan item: the global batch (``item["rows"]``) padded and masked as one process
    would, then this process's contiguous share of it (``item["idx"]``; all of it outside torchrun)."""
    rows = item.get("rows", item["idx"])
    batch = masks([examples[i] for i in rows], item["epoch"], item["batch"])
    tokens = int((batch["labels"] != -100).sum())  # masked tokens of the global batch (>= 1)
    idx, mine = item["idx"], int(item.get("n", len(item["idx"])))
    if len(idx) != len(rows):
        lo = int(np.flatnonzero(np.asarray(rows) == idx[0])[0])
        batch = {k: v[lo:lo + len(idx)] for k, v in batch.items()}
    # the trainer weights a share's loss by its rows (mine / len(rows)); this scale turns the share's summed
    # token losses into its part of the global batch's mean over masked tokens (1 / tokens in one process)
    batch["loss_scale"] = torch.tensor(len(rows) / (max(mine, 1) * tokens) if mine else 0.0)
    return batch


def mask_seed(seed: int, *where: int) -> int:
    return int(np.random.SeedSequence([seed, *where]).generate_state(1)[0])


class MaskedBatches:
    """Pad and mask examples with transformers' ``DataCollatorForLanguageModeling`` (``mask_prob`` of the
    maskable tokens; of those 80% [MASK], 10% a random token, 10% unchanged), under a generator seeded by the
    batch's position, so the masks of every (seed, step) are reproducible and a resumed run draws the same ones.
    Every batch predicts at least one token."""

    def __init__(self, tokenizer: Any, mask_prob: float, seed: int) -> None:
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mask_prob)
        self.mask_id = tokenizer.convert_tokens_to_ids(tokenizer.mask_token)
        self.seed = seed

    def __call__(self, examples: list[dict[str, list[int]]], *where: int) -> dict[str, torch.Tensor]:
        s = mask_seed(self.seed, *where)
        with torch.random.fork_rng(devices=[]):  # the collator draws from torch's generator: fork it, seeded
            torch.manual_seed(s)
            if hasattr(self.collator, "generator"):
                self.collator.generator = None
            batch = self.collator([dict(e) for e in examples])
            labels = batch["labels"]
            if not bool((labels != -100).any()):  # nothing drawn: mask one maskable token
                maskable = (batch.get("attention_mask", torch.ones_like(labels)).bool()
                            & ~_special(examples, labels.shape))
                pos = torch.nonzero(maskable)
                r, c = pos[int(torch.randint(len(pos), (1,)))].tolist()
                labels[r, c] = batch["input_ids"][r, c]
                batch["input_ids"][r, c] = self.mask_id
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


def _special(examples: list[dict[str, list[int]]], shape: torch.Size) -> torch.Tensor:
    out = torch.ones(shape, dtype=torch.bool)
    for i, e in enumerate(examples):
        out[i, :len(e["special_tokens_mask"])] = torch.as_tensor(e["special_tokens_mask"], dtype=torch.bool)
    return out


# -- objective and evaluation ------------------------------------------------------------------------------------
def lm_head(model: nn.Module) -> nn.Module | None:
    """The masked-LM head of ``model`` when it is one module applied token by token after the base model (BERT's
    ``cls``, RoBERTa's ``lm_head``); None otherwise."""
    prefix = getattr(model, "base_model_prefix", None)
    rest = [m for n, m in model.named_children() if n != prefix]
    return rest[0] if prefix and hasattr(model, prefix) and len(rest) == 1 else None


def _masked_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the masked positions only: the vocabulary projection (as costly as the encoder itself on short
    texts) runs on the ~15% of tokens predicted instead of all of them; the same numbers as the full forward."""
    sel = batch["labels"] != -100
    head = lm_head(model)
    if head is None:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.logits[sel].float(), batch["labels"][sel]
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    return head(hidden[sel]).float(), batch["labels"][sel]


class MLMObjective:
    """Cross-entropy of the masked tokens (the first entry, minimised) and their accuracy (logged)."""

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor], state: Any) -> dict[str, torch.Tensor]:
        logits, target = _masked_logits(model, batch)
        n = max(int(target.numel()), 1)  # a torchrun share of a batch may draw no masked token: loss 0
        total = F.cross_entropy(logits, target, reduction="sum")
        loss = total * batch["loss_scale"] if "loss_scale" in batch else total / n  # see collate_share
        return {"loss": loss, "masked_acc": (logits.detach().argmax(-1) == target).float().sum() / n}


@torch.inference_mode()
def evaluate_mlm(model: nn.Module, examples: list[dict[str, list[int]]], masks: MaskedBatches,
                 device: torch.device, batch_size: int = 32) -> dict[str, float]:
    """Masked-token loss and accuracy on held-out texts, with the same (seeded) masks every time it is called."""
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    for j, start in enumerate(range(0, len(examples), batch_size)):
        batch = masks(examples[start:start + batch_size], 0, j, 1)  # epoch 0 never occurs in training
        batch = {k: v.to(device) for k, v in batch.items()}
        logits, target = _masked_logits(model, batch)
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += float((logits.argmax(-1) == target).sum())
        count += int(target.numel())
    model.train(was_training)
    return {"loss": loss / max(count, 1), "accuracy": correct / max(count, 1), "masked_tokens": int(count)}


# -- callbacks -----------------------------------------------------------------------------------------------------
class LossCurve(Callback):
    """The training loss (mean of every ``every`` steps) and, every ``eval_every`` steps, the held-out loss and
    accuracy; kept in checkpoints so a resumed run reports the whole curve. A step's loss is the trainer's running
    sum over every process (the global batch's loss under torchrun); ``masked_acc`` is this process's share's."""

    order = 60
    key = "mlm_curve"

    def __init__(self, every: int, eval_every: int = 0, evaluate: Any = None) -> None:
        self.every, self.eval_every, self.evaluate = every, eval_every, evaluate
        self.curve: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.window = [0.0, 0.0, 0]  # loss sum, accuracy sum, steps
        self.last = [0.0, 0]  # the trainer's epoch loss sum and rows seen at the previous step

    def on_step_end(self, trainer: Any) -> None:
        st = trainer.state
        if st.seen < self.last[1]:  # a new epoch: the trainer's sums started again
            self.last = [0.0, 0]
        rows = st.seen - self.last[1]
        self.window[0] += (st.loss_sum - self.last[0]) / rows if rows else float("nan")
        self.last = [st.loss_sum, st.seen]
        self.window[1] += st.logs.get("masked_acc", float("nan"))
        self.window[2] += 1
        if st.step % self.every == 0 or st.step >= st.total_steps or st.should_stop:
            self.flush(st.step)
        if self.eval_every and self.evaluate is not None and st.step % self.eval_every == 0 \
                and st.step < st.total_steps:
            self.evals.append({"step": st.step, **self.evaluate()})

    def flush(self, step: int) -> None:
        s_loss, s_acc, n = self.window
        if n:
            self.curve.append({"step": step, "loss": s_loss / n, "masked_acc": s_acc / n})
        self.window = [0.0, 0.0, 0]

    def state_dict(self, trainer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"curve": self.curve, "evals": self.evals, "window": self.window, "last": self.last}

    def load_state_dict(self, trainer: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.curve, self.evals, self.window = list(meta["curve"]), list(meta["evals"]), list(meta["window"])
        self.last = list(meta.get("last", [0.0, 0]))


class TimeBudget(Callback):
    """Stop at the first optimiser step after ``minutes`` of training (counted across resumes)."""

    order = 50
    key = "time_budget"

    def __init__(self, minutes: float | None) -> None:
        self.limit = None if minutes is None else float(minutes) * 60.0
        self.before, self.t0, self.stopped_at = 0.0, time.perf_counter(), None

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def on_fit_start(self, trainer: Any) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, trainer: Any) -> None:
        if self.limit is not None and self.elapsed() >= self.limit and trainer.state.step < trainer.state.total_steps:
            trainer.state.should_stop = True
            self.stopped_at = trainer.state.step

    def state_dict(self, trainer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"elapsed": self.elapsed(), "stopped_at": self.stopped_at}

    def load_state_dict(self, trainer: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.before, self.t0, self.stopped_at = float(meta["elapsed"]), time.perf_counter(), meta["stopped_at"]


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (as BERT); each shared tensor once."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"}]
