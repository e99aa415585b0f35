"""The hybrid head's lexical branch, run inside ``TransferModel.forward``: TF-IDF word 1-2 grams of the batch's
raw texts (``batch["texts"]``, which text batches carry and backbones ignore) times a weight matrix, added to the
neural head's outputs.

The TF-IDF is the classical baseline's :class:`~transferkit.baselines.tfidf.TfidfFeaturiser` (torch ops over the
vocabulary); saved with the model: ``idf_`` and the weight as tensors, the vocabulary as JSON
(``lexical_vocabulary.json``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import nn

from ..baselines.tfidf import TfidfFeaturiser

TEXTS_KEY = "texts"  # the raw texts of a text batch (see transferkit.features.inputs.Inputs.batch)


class LexicalBranch(nn.Module):
    """``forward(batch) = tfidf(batch["texts"]) @ linear.weight.T`` for a fixed vocabulary, idf and weight."""

    def __init__(self, vocab_size: int, n_out: int) -> None:
        super().__init__()
        self.tfidf = TfidfFeaturiser(vocab_size)
        self.linear = nn.Linear(vocab_size, n_out, bias=False)
        self.linear.requires_grad_(False)

    @classmethod
    def from_vectorizer(cls, vec: TfidfVectorizer, weight: np.ndarray) -> LexicalBranch:
        """The branch of a fitted vectoriser and its weight block [n_out, vocab_size]."""
        branch = cls(len(vec.idf_), weight.shape[0])
        branch.tfidf.set_vectorizer(vec)
        with torch.no_grad():
            branch.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        return branch

    @property
    def vocabulary(self) -> dict[str, int]:
        return self.tfidf.vocabulary

    def forward(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, dict) or TEXTS_KEY not in batch:
            from ..errors import DataError

            raise DataError("This model's lexical (TF-IDF) branch needs the raw texts in the batch (key "
                            f"'{TEXTS_KEY}'); build batches with transferkit.features.Inputs.")
        return self.linear(self.tfidf.encode(batch[TEXTS_KEY]))


__all__ = ["LexicalBranch", "TEXTS_KEY"]
