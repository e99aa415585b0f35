"""User-facing errors: one template, one line, exit code 2 from the CLI.

``ConfigError`` and ``DataError`` are also ``ValueError``s, as scikit-learn's conventions expect of bad input
(``except ValueError`` in user code and in scikit-learn's estimator checks catches them).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits with code 2."""

    exit_code = 2


class ConfigError(TransferkitError, ValueError):
    """A bad parameter or configuration value."""


class DataError(TransferkitError, ValueError):
    """Missing, malformed or unusable data."""


class TrainingInterrupted(TransferkitError):
    """SIGINT / SIGTERM stopped training; the message says whether a checkpoint was written and how to resume."""

    exit_code = 130


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean X?' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def bad_param(owner: str, name: str, expected: str, got: object) -> ConfigError:
    """The one template for a bad parameter value."""
    return ConfigError(f"The '{name}' parameter of {owner} must be {expected}. Got {got!r} instead.")
