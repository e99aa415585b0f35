"""Sample inputs for the parity check. A run does not keep its data, so by default they are synthetic: images at
the run's input size (uniform noise, smooth random fields, bright strokes on dark), texts of random words from the
run's own vocabularies (its tokenizer's whole words, its TF-IDF terms), of lengths up to past ``max_length`` so
that truncation is exercised. ``--sample DATA`` uses the first rows of real data instead."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..backbones.base import ImagePreprocessor
from ..backbones.text import HFTokenizer
from ..baselines.tfidf import TfidfTokenizer
from ..data import from_arrays
from ..data.dataset import Dataset
from ..errors import DataError
from ..runs.store import LoadedRun

ROWS = 64
# Words for tokenizers without a vocabulary to draw from (hashed words).
FALLBACK_WORDS = ("the", "offer", "free", "meeting", "report", "money", "click", "project", "today", "please",
                  "price", "account", "team", "win", "schedule", "update", "limited", "review", "thanks", "now",
                  "data", "urgent", "call", "next", "week", "deal", "order", "results", "!", "?", ",", ".")


def synthetic_images(size: int, n: int = ROWS, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3]: a quarter uniform noise, half smooth random fields, a quarter strokes on dark."""
    rng = np.random.default_rng(seed)
    k = n // 4
    noise = rng.integers(0, 256, (k, size, size, 3))
    coarse = torch.from_numpy(rng.uniform(0, 255, (n - 2 * k, 3, 4, 4)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    smooth = smooth.permute(0, 2, 3, 1).numpy()
    strokes = np.zeros((k, size, size, 3))
    for img in strokes:
        for _ in range(3):
            r, c = rng.integers(0, size, 2)
            h, w = rng.integers(1, max(2, size // 2), 2)
            img[r:r + h, c:c + w] = rng.integers(128, 256)
    out = np.concatenate([noise, smooth, strokes]).round().clip(0, 255).astype(np.uint8)
    return out[rng.permutation(len(out))]


def _vocabulary_words(pre: object) -> list[str]:
    """Whole words of a tokenizer's vocabulary (sorted, so draws are reproducible)."""
    if isinstance(pre, HFTokenizer):
        return sorted(w for w in pre.tokenizer.get_vocab() if w.isalpha() and len(w) > 2)
    if isinstance(pre, TfidfTokenizer):
        return sorted(t for t in pre.vocabulary if " " not in t)
    return []


def synthetic_texts(word_lists: list[list[str]], max_length: int, n: int = ROWS, seed: int = 0) -> list[str]:
    """``n`` texts of 1 .. ``max_length + 8`` random words, each word from a random one of ``word_lists``."""
    rng = np.random.default_rng(seed)
    lists = [w for w in word_lists if w] or [list(FALLBACK_WORDS)]
    counts = rng.permutation(np.linspace(1, max_length + 8, n).astype(int))
    texts = []
    for c in counts:
        picks = [lists[rng.integers(len(lists))] for _ in range(c)]
        texts.append(" ".join(words[rng.integers(len(words))] for words in picks))
    return texts


def synthetic_dataset(run: LoadedRun, n: int = ROWS, seed: int = 0) -> Dataset:
    """Synthetic inputs of the run's modality (see the module docstring)."""
    model = run.model
    pre = model.backbone.preprocess
    if isinstance(pre, ImagePreprocessor):
        return from_arrays(synthetic_images(pre.size, n, seed))
    lists = [_vocabulary_words(pre)]
    if model.lexical is not None:
        lists.append(_vocabulary_words(model.lexical.tfidf.preprocess))
    return from_arrays(synthetic_texts(lists, int(model.backbone.meta.max_length or 64), n, seed))


def sample_dataset(run: LoadedRun, data: str | Path | None = None, n: int = ROWS) -> tuple[Dataset, str]:
    """(the parity inputs, what they are): the first ``n`` rows of ``data`` (image files / folders, a .txt file
    with one text per line, or a table), else :func:`synthetic_dataset`.

    Raises:
        DataError: ``data`` missing, empty, or of the other modality.
    """
    if data is None:
        return synthetic_dataset(run, n), "synthetic"
    from ..runs.predict import inputs_to_dataset

    ds = inputs_to_dataset(run, [str(data)])
    if len(ds) == 0:
        raise DataError(f"Sample data '{data}' holds no rows. Give a few inputs, or leave out --sample.")
    return ds.subset(np.arange(min(n, len(ds)))), str(data)


__all__ = ["ROWS", "sample_dataset", "synthetic_dataset", "synthetic_images", "synthetic_texts"]
