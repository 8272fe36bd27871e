"""formulaic's model matrices evaluated with the library's errors: unseen categories and
formulaic's own errors as ``ValueError``, non-finite columns refused."""

from __future__ import annotations

import ast
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from noisybayes._checks import name_list

__all__ = ["evaluate", "finite_frame"]


def _unseen_categories(message: str) -> str:
    """The categories named in formulaic's warning, sorted and shortened (the first ten and a
    count of the rest); the warning's first line if it names none."""
    found = re.search(r"\{.*\}", message)
    try:
        categories = ast.literal_eval(found.group(0)) if found else None
    except (ValueError, SyntaxError):
        categories = None
    if not isinstance(categories, (set, frozenset)):
        return message.strip().splitlines()[0]
    return name_list(sorted(map(repr, categories)))


def evaluate(build: Any) -> pd.DataFrame:
    """Run formulaic's ``build``; its errors, and categories unseen at fit time, as ValueError.

    Floating-point warnings are silenced: non-finite results are reported by ``finite_frame``.
    """
    from formulaic.errors import DataMismatchWarning, FormulaicError

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("error", DataMismatchWarning)
            return build()
    except DataMismatchWarning as warning:
        unseen = _unseen_categories(str(warning))
        raise ValueError(f"data must only hold categories seen at fit time, got {unseen}") from None
    except FormulaicError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"formula could not be evaluated on the data: {first}") from None


def finite_frame(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """``frame`` as float64; a NaN or inf is an error naming ``what``, the column and row."""
    frame = frame.astype(np.float64)
    values = frame.to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(
            f"{what} {frame.columns[col]!r} must be finite, got {int(bad[:, col].sum())} "
            f"NaN/inf value(s), the first in the row labelled {frame.index[row]}"
        )
    return frame
