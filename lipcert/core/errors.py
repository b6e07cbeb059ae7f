"""Exceptions and warnings raised by lipcert."""

from __future__ import annotations


class LipcertError(ValueError):
    """Bad input or misuse of the lipcert API (a ``ValueError``)."""


class LipschitzBoundError(LipcertError):
    """No guaranteed Lipschitz bound can be computed for a model (unknown or unsafe layers)."""


class SolverError(RuntimeError):
    """An exact solver failed without producing a proven bound."""


class LipcertWarning(UserWarning):
    """Something a careful user should know about: a solver stopped at its time limit (the answer is a bound)."""
