"""Tokenisation shared by text backbones: pre-tokenise once, pad per batch (dynamic padding)."""
from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import torch


def collate_ids(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of token-id lists to its longest member."""
    n, longest = len(ids), max((len(x) for x in ids), default=1)
    input_ids = torch.full((n, max(longest, 1)), pad_id, dtype=torch.long)
    mask = torch.zeros((n, max(longest, 1)), dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class HFTokenizer:
    """A Hugging Face tokenizer with truncation to ``max_length``."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pad_id = int(tokenizer.pad_token_id or 0)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return collate_ids(self.tokenize(texts), self.pad_id)


class HashTokenizer:
    """Word-level tokeniser with a fixed hashed vocabulary: needs no fitting, so runs stay reproducible."""

    _word = re.compile(r"\w+|[^\w\s]", re.UNICODE)

    def __init__(self, vocab_size: int = 32768, max_length: int = 256) -> None:
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)
        self.pad_id = 0  # 1 = [CLS]; words hash into 2..vocab_size-1

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        out = []
        span = self.vocab_size - 2
        for t in texts:
            words = self._word.findall(t.lower())[: self.max_length - 1]
            out.append([1] + [2 + zlib.crc32(w.encode("utf-8")) % span for w in words])
        return out

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return collate_ids(self.tokenize(texts), self.pad_id)
