"""A lexical branch beside the neural head: TF-IDF word 1-2 grams times a weight matrix, added to the logits.

Saved with the model: ``idf`` and ``weight`` as tensors (in ``model.safetensors``), the vocabulary as JSON."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import nn

VOCAB_FILE = "lexical_vocabulary.json"


def make_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, vocabulary=vocabulary)


class LexicalHead(nn.Module):
    """``outputs(texts) = tfidf(texts) @ weight.T`` for a fixed vocabulary and idf."""

    def __init__(self, vocabulary: dict[str, int], n_out: int) -> None:
        super().__init__()
        self.vocabulary = dict(vocabulary)
        v = len(self.vocabulary)
        self.register_buffer("idf", torch.ones(v))
        self.register_buffer("weight", torch.zeros(n_out, v))
        self._vec: TfidfVectorizer | None = None

    @classmethod
    def from_vectorizer(cls, vec: TfidfVectorizer, weight: np.ndarray) -> LexicalHead:
        head = cls(vec.vocabulary_, weight.shape[0])
        head.idf.copy_(torch.as_tensor(vec.idf_, dtype=torch.float32))
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        return head

    def vectorizer(self) -> TfidfVectorizer:
        if self._vec is None or len(self._vec.idf_) != len(self.vocabulary):
            self._vec = make_vectorizer({k: int(i) for k, i in self.vocabulary.items()})
            self._vec.idf_ = self.idf.numpy().astype(np.float64)
        return self._vec

    def outputs(self, texts: Sequence[str]) -> np.ndarray:
        x = self.vectorizer().transform(list(texts))
        return np.asarray(x @ self.weight.numpy().T.astype(np.float64), dtype=np.float32)

    def save_vocabulary(self, directory: Path) -> None:
        (directory / VOCAB_FILE).write_text(json.dumps(self.vocabulary), encoding="utf-8")

    @classmethod
    def load_vocabulary(cls, directory: Path, n_out: int) -> LexicalHead | None:
        p = directory / VOCAB_FILE
        if not p.exists():
            return None
        return cls(json.loads(p.read_text(encoding="utf-8")), n_out)
