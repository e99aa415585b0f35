"""What an export saves beside its model so that users can build its inputs from raw data, per preprocessing kind:
the tokenizer files, a term vocabulary or tokenizer settings; how to read them back (the parity check builds its
inputs from the saved files, not from the run, so a file that is missing or wrong fails it); and the code the
model card shows for it.

The snippets are plain Python (NumPy, PIL, ``re``/``zlib``, transformers' tokenizer) and tested against the run's
own preprocessing."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backbones.base import ImagePreprocessor
from ..backbones.text import HashTokenizer, HFTokenizer
from ..baselines.tfidf import TfidfTokenizer
from ..errors import ConfigError
from ..registry import Registry

TERM_VOCABULARY = "term_vocabulary.json"
HASH_TOKENIZER = "hash_tokenizer.json"


@dataclass(frozen=True)
class InputFiles:
    """How one preprocessing kind is saved (``save(pre, folder) -> file names``), read back
    (``load(folder, pre) -> an equivalent preprocessor``) and shown (``snippet(pre) -> code``)."""

    save: Callable[[Any, Path], list[str]]
    load: Callable[[Path, Any], Any]
    snippet: Callable[[Any], str]


INPUT_FILES: Registry[InputFiles] = Registry(
    "input preprocessing", " An export saves images, Hugging Face tokenizers, hashed words and TF-IDF terms.")


def _new_files(folder: Path, before: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in before)


# -- images: decoded and resized by the user; the graph normalises -------------------------------------------------
IMAGE_SNIPPET = '''import numpy as np
from PIL import Image, ImageOps

def image_array(path, size={size}):
    """uint8 [3, size, size]: EXIF rotation, alpha over white, RGB, {interpolation} resize (as the run did)."""
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    im = im.convert("RGB").resize((size, size), Image.Resampling.{resample})
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)

feeds["images"] = np.stack([image_array(p) for p in paths])
'''


def _image_snippet(pre: ImagePreprocessor) -> str:
    resample = "BICUBIC" if pre.interpolation == "bicubic" else "BILINEAR"
    return IMAGE_SNIPPET.format(size=pre.size, interpolation=pre.interpolation, resample=resample)


INPUT_FILES.register("ImagePreprocessor", "uint8 images at the run's size; normalised inside the graph")(
    InputFiles(save=lambda pre, folder: [], load=lambda folder, pre: pre, snippet=_image_snippet))


# -- Hugging Face tokenizers: save_pretrained, with the run's max_length as model_max_length -----------------------
HF_SNIPPET = '''from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(EXPORT_DIR)  # model_max_length is the run's max_length ({max_length})
enc = tok(texts, truncation=True, padding=True, return_tensors="np")
feeds.update(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
'''


def _save_hf(pre: HFTokenizer, folder: Path) -> list[str]:
    before = {p.name for p in folder.iterdir()}
    tok = copy.deepcopy(pre.tokenizer)
    tok.model_max_length = pre.max_length  # truncation=True then cuts where the run did
    tok.save_pretrained(str(folder))
    return _new_files(folder, before)


def _load_hf(folder: Path, pre: HFTokenizer) -> HFTokenizer:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return HFTokenizer(tok, int(tok.model_max_length))


INPUT_FILES.register("HFTokenizer", "a Hugging Face tokenizer (tokenizer.json and its config)")(
    InputFiles(save=_save_hf, load=_load_hf, snippet=lambda pre: HF_SNIPPET.format(max_length=pre.max_length)))


# -- hashed words (scratch:transformer) --------------------------------------------------------------------------
PAD_SNIPPET = '''import numpy as np

def pad(rows):
    """Lists of ids -> (ids, mask) int64 [N, longest], padded with 0 (mask 0)."""
    n = max([1, *map(len, rows)])
    ids, mask = np.zeros((len(rows), n), np.int64), np.zeros((len(rows), n), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return ids, mask
'''

HASH_SNIPPET = PAD_SNIPPET + '''
import re, zlib

def token_ids(text, vocab_size={vocab_size}, max_length={max_length}):  # settings in hash_tokenizer.json
    words = re.findall(r"\\w+|[^\\w\\s]", text.lower())[: max_length - 1]
    return [1] + [2 + zlib.crc32(w.encode("utf-8")) % (vocab_size - 2) for w in words]

feeds["input_ids"], feeds["attention_mask"] = pad([token_ids(t) for t in texts])
'''


def _save_hash(pre: HashTokenizer, folder: Path) -> list[str]:
    settings = {"type": "hashed words", "vocab_size": pre.vocab_size, "max_length": pre.max_length,
                "pattern": HashTokenizer._word.pattern, "lowercase": True, "first_id": 1, "pad_id": pre.pad_id,
                "word_id": "2 + crc32(utf-8 word) % (vocab_size - 2)"}
    (folder / HASH_TOKENIZER).write_text(json.dumps(settings, indent=1), encoding="utf-8")
    return [HASH_TOKENIZER]


def _load_hash(folder: Path, pre: HashTokenizer) -> HashTokenizer:
    s = json.loads((folder / HASH_TOKENIZER).read_text(encoding="utf-8"))
    return HashTokenizer(int(s["vocab_size"]), int(s["max_length"]))


INPUT_FILES.register("HashTokenizer", "hashed words (scratch:transformer): settings in hash_tokenizer.json")(
    InputFiles(save=_save_hash, load=_load_hash,
               snippet=lambda pre: HASH_SNIPPET.format(vocab_size=pre.vocab_size, max_length=pre.max_length)))


# -- TF-IDF terms (classical:tfidf, a hybrid run's lexical branch) -----------------------------------------------
TERMS_SNIPPET = PAD_SNIPPET + '''
import json, re

vocab = json.load(open(f"{{EXPORT_DIR}}/{file}", encoding="utf-8"))  # word 1-2 gram -> id

def terms_of(text):
    """scikit-learn's TfidfVectorizer analyser (lower case, words of 2+ characters, 1-2 grams), in-vocabulary only."""
    words = re.findall(r"(?u)\\b\\w\\w+\\b", text.lower())
    grams = words + [" ".join(p) for p in zip(words, words[1:])]
    return [vocab[g] for g in grams if g in vocab]

feeds["term_ids"], feeds["term_mask"] = pad([terms_of(t) for t in texts])  # the graph does tf, idf, l2 norm
'''


def _save_terms(pre: TfidfTokenizer, folder: Path) -> list[str]:
    (folder / TERM_VOCABULARY).write_text(json.dumps(pre.vocabulary, ensure_ascii=False), encoding="utf-8")
    return [TERM_VOCABULARY]


def _load_terms(folder: Path, pre: TfidfTokenizer) -> TfidfTokenizer:
    return TfidfTokenizer(json.loads((folder / TERM_VOCABULARY).read_text(encoding="utf-8")))


INPUT_FILES.register("TfidfTokenizer", "TF-IDF word 1-2 grams: the vocabulary in term_vocabulary.json")(
    InputFiles(save=_save_terms, load=_load_terms, snippet=lambda pre: TERMS_SNIPPET.format(file=TERM_VOCABULARY)))


def input_files(pre: Any) -> InputFiles:
    """The saving / loading / snippet entry of a preprocessor.

    Raises:
        ConfigError: a preprocessor an export cannot save (names it).
    """
    name = type(pre).__name__
    if name not in INPUT_FILES:
        raise ConfigError(f"An export cannot save the '{name}' preprocessing of this run (it saves "
                          f"{', '.join(INPUT_FILES.names())}). Use the run with `transferkit predict` instead.")
    return INPUT_FILES.get(name)


__all__ = ["HASH_TOKENIZER", "INPUT_FILES", "TERM_VOCABULARY", "InputFiles", "input_files"]
