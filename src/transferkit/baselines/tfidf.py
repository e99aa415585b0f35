"""TF-IDF of word 1-2 grams (sublinear tf, smooth idf, l2-normalised rows), as torch ops over a fixed vocabulary.

The same module serves the classical text baseline (the ``classical:tfidf`` backbone: ``head(tfidf(x))``) and the
hybrid head's lexical branch (:class:`transferkit.engine.lexical.LexicalBranch`). Fitting uses scikit-learn's
``TfidfVectorizer``; the fitted vocabulary and idf then drive :class:`TfidfFeaturiser`, whose output equals the
vectoriser's ``transform`` (to float32 rounding):

* :class:`TfidfTokenizer` (the backbone's ``preprocess``): texts -> ids of the vocabulary's n-grams, one id per
  occurrence (out-of-vocabulary n-grams dropped), with scikit-learn's own analyser (lower-case, ``\\b\\w\\w+\\b``);
* :meth:`TfidfFeaturiser.forward`: counts by ``scatter_add``, ``1 + log(count)``, times ``idf_``, row l2 norm.

Saved as tensors (``idf_``) plus the vocabulary as JSON (:func:`vocabulary_file`), never pickled.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from ..backbones.base import Backbone, BackboneMeta
from ..backbones.text import collate_ids
from ..errors import DataError

FEATURES = "tfidf word 1-2 grams"


def make_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    """The one TF-IDF configuration: word 1-2 grams, sublinear tf, every term kept (min_df 1)."""
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, vocabulary=vocabulary)


def fitted_vectorizer(texts: Sequence[str]) -> TfidfVectorizer:
    """:func:`make_vectorizer` fitted on ``texts``; texts without a single word (2+ letters or digits) are a
    DataError instead of scikit-learn's 'empty vocabulary'."""
    try:
        return make_vectorizer().fit(list(texts))
    except ValueError as e:
        if "empty vocabulary" not in str(e):
            raise
        raise DataError(f"The {len(texts)} training texts hold no word of two or more letters or digits, so TF-IDF "
                        "has nothing to learn from. Check the --text-column, or use a pretrained text backbone "
                        "(e.g. packaged:minilm-l6).") from None


class TfidfTokenizer:
    """Texts -> vocabulary ids of their word 1-2 grams (one per occurrence); the text backbones' tokenizer surface
    (``tokenize``, ``pad_id``, ``__call__``), so ``Inputs`` batches it like any other text backbone."""

    pad_id = 0  # padding positions carry mask 0, so they add nothing to the counts

    def __init__(self, vocabulary: dict[str, int]) -> None:
        self.vocabulary = {str(k): int(v) for k, v in vocabulary.items()}
        self._analyze = make_vectorizer().build_analyzer()

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        v = self.vocabulary
        return [[v[g] for g in self._analyze(t) if g in v] for t in texts]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return collate_ids(self.tokenize(texts), self.pad_id)


class TfidfFeaturiser(Backbone):
    """``classical:tfidf``: token ids of :class:`TfidfTokenizer` -> dense TF-IDF rows [B, vocab_size].

    Args:
        vocab_size: the size of an unfitted featuriser (a rebuilt run's); the vocabulary itself comes from
            :meth:`set_vocabulary` (or :meth:`fit` / :meth:`from_vectorizer`), the idf from the run's tensors.
    """

    MODALITY = "text"

    @classmethod
    def unfitted(cls, vocab_size: int | None = None, **_: Any) -> TfidfFeaturiser:
        """The unfitted featuriser of the ``classical:tfidf`` spec (``vocab_size``: a saved run's)."""
        return cls(vocab_size or 0)

    def __init__(self, vocab_size: int = 0) -> None:
        super().__init__()
        self.register_buffer("idf_", torch.ones(int(vocab_size)))
        self.preprocess = TfidfTokenizer({})
        self._set_meta(int(vocab_size))

    def _set_meta(self, vocab_size: int) -> None:
        self.meta = BackboneMeta(spec="classical:tfidf", modality="text", feature_dim=vocab_size, source="classical",
                                 pretrained=False, licence="n/a",
                                 extra={"features": FEATURES, "rebuild_options": {"vocab_size": vocab_size}})

    @property
    def vocabulary(self) -> dict[str, int]:
        return self.preprocess.vocabulary

    def set_vocabulary(self, vocabulary: dict[str, int]) -> None:
        """Adopt ``vocabulary`` (term -> column), which must match the idf's size."""
        ids = sorted(int(i) for i in vocabulary.values())
        if ids != list(range(len(self.idf_))):
            raise ValueError(f"a vocabulary of {len(vocabulary)} terms with columns 0..{len(self.idf_) - 1} was "
                             f"expected (the idf has {len(self.idf_)} entries)")
        self.preprocess = TfidfTokenizer(vocabulary)

    def set_vectorizer(self, vec: TfidfVectorizer) -> None:
        """Adopt a fitted scikit-learn vectoriser's vocabulary and idf."""
        self.idf_ = torch.as_tensor(vec.idf_, dtype=torch.float32)
        self._set_meta(len(vec.idf_))
        self.set_vocabulary(vec.vocabulary_)

    @classmethod
    def from_vectorizer(cls, vec: TfidfVectorizer) -> TfidfFeaturiser:
        f = cls(len(vec.idf_))
        f.set_vectorizer(vec)
        return f

    def fit(self, texts: Sequence[str]) -> TfidfFeaturiser:
        """Learn the vocabulary and idf from ``texts``."""
        self.set_vectorizer(fitted_vectorizer(texts))
        return self

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """TF-IDF rows of raw ``texts`` (tokenised here, then :meth:`forward`)."""
        batch = self.preprocess(texts)
        return self({k: v.to(self.idf_.device) for k, v in batch.items()})

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        x = torch.zeros(ids.shape[0], self.idf_.shape[0], dtype=self.idf_.dtype, device=ids.device)
        x = x.scatter_add_(1, ids, mask.to(x.dtype))
        x = torch.where(x > 0, x.clamp_min(1.0).log_().add_(1.0), x)  # sublinear tf: 1 + log(count)
        x = x.mul_(self.idf_)
        return x.div_(x.norm(dim=1, keepdim=True).clamp_min_(1e-12))

    def describe_preprocessing(self) -> dict[str, Any]:
        terms = json.dumps(sorted(self.vocabulary.items(), key=lambda kv: kv[1]), ensure_ascii=False)
        return {"tokenizer": FEATURES, "terms": len(self.vocabulary),
                "vocabulary_sha256": hashlib.sha256(terms.encode("utf-8")).hexdigest()[:16]}


def vocabulary_file(part: str) -> str:
    """The run file that holds the vocabulary of the TF-IDF inside model part ``part`` ("backbone", "lexical")."""
    return f"{part}_vocabulary.json"


def tfidf_parts(model: torch.nn.Module) -> dict[str, TfidfFeaturiser]:
    """The TF-IDF featurisers of ``model`` by top-level part (at most one per part), e.g. {"backbone": ...}."""
    parts: dict[str, TfidfFeaturiser] = {}
    for name, m in model.named_modules():
        if isinstance(m, TfidfFeaturiser):
            part = name.split(".")[0]
            if part in parts:
                raise ValueError(f"model part '{part}' holds more than one TF-IDF featuriser")
            parts[part] = m
    return parts


def save_vocabularies(model: torch.nn.Module, directory: Path) -> None:
    """Write each TF-IDF featuriser's vocabulary of ``model`` as JSON into the run ``directory``."""
    for part, f in tfidf_parts(model).items():
        (directory / vocabulary_file(part)).write_text(json.dumps(f.vocabulary, ensure_ascii=False),
                                                       encoding="utf-8")


def read_vocabulary(directory: Path, part: str) -> dict[str, int] | None:
    """The vocabulary saved for model part ``part`` in a run ``directory``, or None."""
    p = directory / vocabulary_file(part)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def load_vocabularies(model: torch.nn.Module, directory: Path) -> None:
    """Give each TF-IDF featuriser of a rebuilt ``model`` its vocabulary from the run ``directory``."""
    for part, f in tfidf_parts(model).items():
        vocab = read_vocabulary(directory, part)
        if vocab is None:
            from ..errors import DataError

            raise DataError(f"Run '{directory}' has no {vocabulary_file(part)} (the vocabulary of its TF-IDF "
                            "features); it is incomplete. Fit again.")
        f.set_vocabulary(vocab)


__all__ = ["FEATURES", "TfidfFeaturiser", "TfidfTokenizer", "load_vocabularies", "make_vectorizer",
           "read_vocabulary", "save_vocabularies", "tfidf_parts", "vocabulary_file"]
