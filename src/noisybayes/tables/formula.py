"""Design matrices from a formula and a table, built the way R and statsmodels build them.

``"y ~ x1 + C(g) + np.log(x2) + x1:x2"`` (parsed by ``formulaic``) gives the response
vector ``y`` ``(n,)`` and the design ``X`` ``(n, p)``: numeric columns as they are, a
categorical with ``k`` levels as ``k - 1`` treatment dummies, transforms evaluated, and an
interaction as the product of its factors' columns. The intercept column of ones is not part
of ``X``; ``Design.spec.intercept`` says whether the formula asked for one (``- 1`` or
``+ 0`` removes it). ``"y ~ 1"`` and ``"y ~ 1 + (1 | g)"`` give an ``X`` of no columns.

Rows with a missing value in a column the formula uses are dropped, and counted, or refused
with ``missing="error"``.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

import pandas as pd

from noisybayes._checks import check_choice, name_list
from noisybayes.tables.evaluate import evaluate, finite_frame
from noisybayes.tables.group_terms import GroupData, GroupTerm, fit_group_term, split_group_terms

__all__ = ["Design", "FormulaSpec", "MissingPolicy", "Response", "design_matrices", "unquoted"]

MissingPolicy = Literal["drop", "error"]
Response = Literal["numeric", "labels"]
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
    groups: tuple[GroupTerm, ...] = ()

    def transform(self, data: Any, *, missing: MissingPolicy = "drop") -> Design:
        """The design of the rows of ``data`` (a DataFrame holding ``variables``); ``y`` is None."""
        table = _check_table(data)
        variables = _all_variables(self.variables, self.groups)
        _check_columns(self.formula, table, variables)
        kept, counts, n_dropped = _drop_missing(table, variables, missing)
        X = evaluate(lambda: self.rhs_spec.get_model_matrix(kept, na_action="ignore"))
        X = finite_frame(pd.DataFrame(X), "design column")
        X = X.drop(columns=[_INTERCEPT], errors="ignore")
        X.index = kept.index
        return Design(
            X=X, y=None, spec=self, n_rows=len(table), n_dropped=n_dropped,
            missing_by_column=counts, groups=tuple(term.data(kept) for term in self.groups),
        )


@dataclass(frozen=True)
class Design:
    """A response and design built from a table: ``X`` ``(n, p)`` and ``y`` ``(n,)``, and the
    rows of each group term (``noisybayes.tables.group_terms``).

    ``n_rows`` is the table's row count, ``n_dropped`` how many of them had a missing value
    in a used column, ``missing_by_column`` the number of missing values in each such column.
    """

    X: pd.DataFrame
    y: pd.Series | None
    spec: FormulaSpec
    n_rows: int
    n_dropped: int
    missing_by_column: dict[str, int]
    groups: tuple[GroupData, ...] = ()


def _all_variables(fixed: tuple[str, ...], groups: tuple[GroupTerm, ...]) -> tuple[str, ...]:
    """The table columns of the fixed terms, then those only the group terms read."""
    return tuple(dict.fromkeys(fixed + tuple(v for g in groups for v in g.variables)))


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
            f"data must have no missing values in the formula's columns, got {n_bad} row(s) "
            f"with missing values ({detail})"
        )
    if n_bad == len(table):
        raise ValueError(
            f"data must keep at least one row after dropping rows with missing values, got "
            f"all {len(table)} row(s) missing a value"
        )
    return table.loc[~rows], counts, n_bad


def _check_numbers_as_text(table: pd.DataFrame, bare: set[str]) -> None:
    """Refuse a text column named bare in the formula (which would become a categorical, one
    dummy per distinct value) when at least half its text values read as numbers and some do
    not: a numeric column with stray text, as a CSV reader leaves it. Declared categories,
    all-text columns and codes such as ``"01"`` pass; ``C(x)`` asks for the categorical."""
    for name in sorted(bare & set(map(str, table.columns))):
        column = table[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or not (
                pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            continue  # numbers, booleans, or categories the user declared
        strings = column[column.map(lambda value: isinstance(value, str))]
        as_numbers = pd.to_numeric(strings, errors="coerce")
        text = strings[as_numbers.isna()]
        if len(strings) == 0 or len(text) == 0 or as_numbers.notna().mean() < 0.5:
            continue  # all text (categories), or all numbers as text (codes such as "01")
        term = name if name.isidentifier() and not keyword.iskeyword(name) else f"Q({name!r})"
        raise ValueError(f"column {name!r} must hold numbers or categories, got numbers stored "
                         f"as text with some other text (e.g. {text.iloc[0]!r} at index "
                         f"{text.index[0]!s}): clean the column, or write C({term}) in the "
                         f"formula to use its values as categories")


def unquoted(expression: str) -> str | None:
    """The column name inside ``Q("name")`` or ``Q('name')``, else ``None``."""
    quoted = re.fullmatch(r"""Q\((["'])(.*)\1\)""", expression)
    return None if quoted is None else quoted.group(2)


def _bare_column(factor: Any) -> str | None:
    """The column a formula factor names as it is (``x``, ``Q("my x")``), else ``None``."""
    if factor.eval_method.value == "lookup":
        return str(factor.expr)
    return unquoted(str(factor.expr))


def _check_label_response(formula: str, lhs: Any, lhs_vars: tuple[str, ...]) -> None:
    """Refuse a classifier's response that is not one column named as it is (``y``,
    ``Q("y")``): labels are read from the table, not evaluated."""
    factors = [factor for term in lhs for factor in term.factors]
    if len(lhs) != 1 or len(factors) != 1 or _bare_column(factors[0]) not in lhs_vars[:1]:
        raise ValueError(f"formula must have one column of class labels as its response, got "
                         f"{formula.split('~')[0].strip()!r} in {formula!r}")


def _check_no_columns(formula: str, intercept: bool, variables: list[str]) -> None:
    """Refuse a design without fixed columns unless the formula asked for none: ``y ~ 1``
    and ``y ~ 1 + (1 | g)`` keep the intercept alone, while terms in ``variables`` that
    gave no columns, or no intercept either, are mistakes."""
    if variables:
        raise ValueError(
            f"formula terms in {', '.join(map(repr, variables))} must give design columns, "
            f"got none from {formula!r} (a categorical column with one level has none beyond "
            "the intercept)")
    if not intercept:
        raise ValueError(
            f"formula must have an intercept or a fixed term with columns, got {formula!r}")


def design_matrices(formula: str, data: Any, *, missing: MissingPolicy = "drop",
                    response: Response = "numeric") -> Design:
    """Build ``y`` and ``X`` of ``formula`` (``"response ~ terms"``) from the DataFrame ``data``.

    ``response="labels"`` (a classifier's) takes the response as one column of class
    labels, of any type (strings, booleans, numbers), as it is; ``"numeric"`` evaluates it
    as a numeric expression (``np.log(y)``).

    Raises ``ValueError`` naming the problem for a formula without ``~``, an unknown column,
    a non-numeric response, missing values with ``missing="error"``, an empty table, or
    non-finite values after transforms.
    """
    from formulaic import Formula
    from formulaic.errors import FormulaicError

    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must have the form 'response ~ terms', got {formula!r}")
    table = _check_table(data)
    fixed, group_exprs = split_group_terms(formula)
    try:
        parsed = Formula(fixed)
        group_vars = tuple(v for e, g in group_exprs for v in (*Formula(e).required_variables, g))
        lhs_vars = tuple(sorted(parsed.lhs.required_variables))
        rhs_vars = tuple(sorted(parsed.rhs.required_variables))
    except FormulaicError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"formula could not be parsed: {first} (got {formula!r})") from None
    variables = tuple(dict.fromkeys(lhs_vars + rhs_vars + group_vars))
    _check_columns(formula, table, variables)
    _check_numbers_as_text(table, {name for term in parsed.rhs for factor in term.factors
                                   if (name := _bare_column(factor)) is not None})
    labels = check_choice("response", response, get_args(Response)) == "labels"
    if labels:
        _check_label_response(formula, parsed.lhs, lhs_vars)
    for name in () if labels else lhs_vars:
        dtype = table[name].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            raise ValueError(f"the response column {name!r} must be numeric, got dtype {dtype}")
    kept, missing_counts, n_dropped = _drop_missing(table, variables, missing)
    if labels:
        rhs: Any = evaluate(lambda: parsed.rhs.get_model_matrix(kept, na_action="ignore"))
        response_name = lhs_vars[0]
        y: pd.Series = kept[response_name]
    else:
        matrices = evaluate(lambda: parsed.get_model_matrix(kept, na_action="ignore"))
        lhs, rhs = matrices.lhs, matrices.rhs
        if lhs.shape[1] != 1:
            raise ValueError(
                f"formula must have one numeric response, got {lhs.shape[1]} columns "
                f"{list(map(str, lhs.columns))} from {formula!r}"
            )
        y = finite_frame(pd.DataFrame(lhs), "response").iloc[:, 0]
        response_name = str(lhs.columns[0])
        y.index = kept.index
    intercept = _INTERCEPT in rhs.columns
    X = finite_frame(pd.DataFrame(rhs), "design column")
    X = X.drop(columns=[_INTERCEPT], errors="ignore")
    X.index = kept.index
    if X.shape[1] == 0:
        _check_no_columns(formula, intercept, [v for v in rhs_vars if v not in group_vars])
    rows = tuple(fit_group_term(expr, group, kept) for expr, group in group_exprs)
    spec = FormulaSpec(
        formula=formula, response=response_name, columns=tuple(map(str, X.columns)),
        intercept=intercept, variables=rhs_vars, rhs_spec=rhs.model_spec,
        groups=tuple(r.term for r in rows),
    )
    return Design(
        X=X, y=y, spec=spec, n_rows=len(table), n_dropped=n_dropped,
        missing_by_column=missing_counts, groups=rows,
    )
