"""Design matrices from a formula and a table, built the way R and statsmodels build them.

``"y ~ x1 + C(g) + np.log(x2) + x1:x2"`` (parsed by ``formulaic``) gives the response
vector ``y`` ``(n,)`` and the design ``X`` ``(n, p)``: numeric columns as they are, a
categorical with ``k`` levels as ``k - 1`` treatment dummies, transforms evaluated, and an
interaction as the product of its factors' columns. The intercept column of ones is not part
of ``X``; ``Design.spec.intercept`` says whether the formula asked for one (``- 1`` or
``+ 0`` removes it).

Rows with a missing value in a column the formula uses are dropped, and counted, or refused
with ``missing="error"``.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from noisybayes._checks import check_choice, name_list

__all__ = ["Design", "FormulaSpec", "MissingPolicy", "design_matrices"]

MissingPolicy = Literal["drop", "error"]
_INTERCEPT = "Intercept"


@dataclass(frozen=True)
class FormulaSpec:
    """What it takes to build the design of new rows exactly as at fit time.

    ``columns`` names the design columns (without the intercept), ``variables`` the table
    columns the right-hand side reads, ``rhs_spec`` is formulaic's model spec (categorical
    levels and transform state as seen at fit time).
    """

    formula: str
    response: str
    columns: tuple[str, ...]
    intercept: bool
    variables: tuple[str, ...]
    rhs_spec: Any

    def transform(self, data: Any, *, missing: MissingPolicy = "drop") -> Design:
        """The design of the rows of ``data`` (a DataFrame holding ``variables``); ``y`` is None."""
        table = _check_table(data)
        _check_columns(self.formula, table, self.variables)
        kept, counts, n_dropped = _drop_missing(table, self.variables, missing)
        X = _evaluate(lambda: self.rhs_spec.get_model_matrix(kept, na_action="ignore"))
        X = _finite_frame(pd.DataFrame(X), "design column")
        X = X.drop(columns=[_INTERCEPT], errors="ignore")
        X.index = kept.index
        return Design(
            X=X, y=None, spec=self, n_rows=len(table), n_dropped=n_dropped,
            missing_by_column=counts,
        )


@dataclass(frozen=True)
class Design:
    """A response and design built from a table: ``X`` ``(n, p)`` and ``y`` ``(n,)``.

    ``n_rows`` is the table's row count, ``n_dropped`` how many of them had a missing value
    in a used column, ``missing_by_column`` the number of missing values in each such column.
    """

    X: pd.DataFrame
    y: pd.Series | None
    spec: FormulaSpec
    n_rows: int
    n_dropped: int
    missing_by_column: dict[str, int]


def _check_table(data: Any) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data must have at least one row, got an empty table")
    return data


def _check_columns(formula: str, table: pd.DataFrame, variables: tuple[str, ...]) -> None:
    unknown = [v for v in variables if v not in table.columns]
    if unknown:
        have = name_list(table.columns)
        raise ValueError(
            f"formula must use columns of the table, got unknown column {unknown[0]!r} in "
            f"{formula!r} (columns: {have})"
        )


def _drop_missing(
    table: pd.DataFrame, variables: tuple[str, ...], missing: str
) -> tuple[pd.DataFrame, dict[str, int], int]:
    """``table`` without the rows missing a value in ``variables``, the number of missing
    values per column, and the number of rows dropped."""
    check_choice("missing", missing, ("drop", "error"))
    used = table[list(variables)] if variables else table.iloc[:, :0]
    isna = used.isna()
    rows = isna.any(axis=1)
    counts = {str(c): int(n) for c, n in isna.sum().items() if n}
    n_bad = int(rows.sum())
    if n_bad and missing == "error":
        detail = name_list(f"{c}: {n}" for c, n in counts.items())
        raise ValueError(
            f"data must have no missing values in the formula's columns when missing='error', "
            f"got {n_bad} row(s) with missing values ({detail})"
        )
    if n_bad == len(table):
        raise ValueError(
            f"data must keep at least one row after dropping rows with missing values, got "
            f"all {len(table)} row(s) missing a value"
        )
    return table.loc[~rows], counts, n_bad


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


def _evaluate(build: Any) -> pd.DataFrame:
    """Run formulaic's ``build``; its errors, and categories unseen at fit time, as ValueError.

    Floating-point warnings are silenced: non-finite results are reported by ``_finite_frame``.
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


def _finite_frame(frame: pd.DataFrame, what: str) -> pd.DataFrame:
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


def design_matrices(formula: str, data: Any, *, missing: MissingPolicy = "drop") -> Design:
    """Build ``y`` and ``X`` of ``formula`` (``"response ~ terms"``) from the DataFrame ``data``.

    Raises ``ValueError`` naming the problem for a formula without ``~``, an unknown column,
    a non-numeric response, missing values with ``missing="error"``, an empty table, or
    non-finite values after transforms.
    """
    from formulaic import Formula
    from formulaic.errors import FormulaicError

    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must have the form 'response ~ terms', got {formula!r}")
    table = _check_table(data)
    try:
        parsed = Formula(formula)
        lhs_vars = tuple(sorted(parsed.lhs.required_variables))
        rhs_vars = tuple(sorted(parsed.rhs.required_variables))
    except FormulaicError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"formula could not be parsed: {first} (got {formula!r})") from None
    variables = tuple(dict.fromkeys(lhs_vars + rhs_vars))
    _check_columns(formula, table, variables)
    for name in lhs_vars:
        dtype = table[name].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            raise ValueError(f"the response column {name!r} must be numeric, got dtype {dtype}")
    kept, missing_counts, n_dropped = _drop_missing(table, variables, missing)
    matrices = _evaluate(lambda: parsed.get_model_matrix(kept, na_action="ignore"))
    lhs, rhs = matrices.lhs, matrices.rhs
    if lhs.shape[1] != 1:
        raise ValueError(
            f"formula must have one numeric response, got {lhs.shape[1]} columns "
            f"{list(map(str, lhs.columns))} from {formula!r}"
        )
    y = _finite_frame(pd.DataFrame(lhs), "response").iloc[:, 0]
    y.index = kept.index
    intercept = _INTERCEPT in rhs.columns
    X = _finite_frame(pd.DataFrame(rhs), "design column")
    X = X.drop(columns=[_INTERCEPT], errors="ignore")
    X.index = kept.index
    if X.shape[1] == 0:
        raise ValueError(
            f"formula must have at least one term besides the intercept, got {formula!r}"
        )
    spec = FormulaSpec(
        formula=formula, response=str(lhs.columns[0]), columns=tuple(map(str, X.columns)),
        intercept=intercept, variables=rhs_vars, rhs_spec=rhs.model_spec,
    )
    return Design(
        X=X, y=y, spec=spec, n_rows=len(table), n_dropped=n_dropped,
        missing_by_column=missing_counts,
    )
