"""Transferability ranking: which backbone (or none) to transfer, and how (``auto``).

Pure scores live in :mod:`.scores`; :func:`rank_backbones` extracts (cached) frozen features and ranks
candidates against the classical baseline; :mod:`.auto` turns a ranking and the labels per class into a choice.
"""
from .auto import AutoChoice, decide
from .rank import CandidateScore, Ranking, rank_backbones
from .scores import hscore, knn_loo, leep, logme, nce

__all__ = ["AutoChoice", "CandidateScore", "Ranking", "decide", "hscore", "knn_loo", "leep", "logme", "nce",
           "rank_backbones"]
