"""Classical, non-transfer baselines as ordinary models: a fitted featuriser backbone + a linear head.

* :mod:`.pixels`: ``classical:pixels``, resized and standardised pixels (:class:`PixelFeaturiser`);
* :mod:`.tfidf`: ``classical:tfidf``, TF-IDF of word 1-2 grams as torch ops (:class:`TfidfFeaturiser`), also the
  hybrid head's lexical branch;
* :mod:`.linear`: the one regularisation grid search for linear models on fixed features (:func:`search_grid`);
* :mod:`.classical`: fitting a baseline (:func:`fit_classical`) and its features for ranking
  (:func:`classical_features`).
"""
from .classical import (FEATURISERS, GRID, ClassicalFit, classical_features, classical_spec, create_classical,
                        fit_classical)
from .linear import GridChoice, full_coef, search_grid
from .pixels import PixelFeaturiser, pixel_size
from .tfidf import TfidfFeaturiser, TfidfTokenizer, make_vectorizer

__all__ = ["FEATURISERS", "GRID", "ClassicalFit", "GridChoice", "PixelFeaturiser", "TfidfFeaturiser",
           "TfidfTokenizer", "classical_features", "classical_spec", "create_classical", "fit_classical",
           "full_coef", "make_vectorizer", "pixel_size", "search_grid"]
