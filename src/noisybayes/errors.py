"""The exceptions noisybayes raises beyond ``ValueError`` and ``TypeError``."""

from __future__ import annotations


class DivergenceError(RuntimeError):
    """A fit whose objective became NaN or infinite and could not recover.

    The message says which quantity diverged, at which step, and what to try.
    """


class ModelError(RuntimeError):
    """An exception raised inside a model's ``forward``, raised again with the inputs'
    shapes and the parameter names; the original exception is chained (``__cause__``)."""
