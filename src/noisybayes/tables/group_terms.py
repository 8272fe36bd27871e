"""Group terms of a formula, ``(expr | group)``, as lme4 and bambi write them.

``y ~ x + (1 | g)`` gives every level of ``g`` its own intercept, ``(x | g)`` its own
intercept and slope on ``x``, ``(0 + x | g)`` its own slope only. ``expr`` is a right-hand
side of its own (built by formulaic: numeric columns, transforms, categoricals), whose
columns ``Z`` (``(n, q)``, the intercept a column of ones named ``"1"``) have effects
varying by group: row ``i`` in group ``g_i`` adds ``Z_i . b[g_i]`` to the linear predictor.
The effects of different columns are independent (bambi's default; lme4's ``||``), so
``(x | g)`` and ``(x || g)`` mean the same here.

Levels are the distinct values of the grouping column seen when the formula is first
applied, in sorted order; rows of a level not seen then get the index ``len(levels)``, the
slot of a new group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from noisybayes.tables.evaluate import evaluate, finite_frame

__all__ = ["NEW_GROUP", "GroupData", "GroupTerm", "fit_group_term", "split_group_terms"]

_INTERCEPT = "Intercept"
NEW_GROUP = "<new>"  # the label of the slot of a group not seen when fitting


def _top_level_terms(rhs: str) -> list[tuple[str, str]]:
    """``rhs`` cut at the ``+`` and ``-`` signs outside parentheses: ``(sign, term)`` pairs."""
    terms, depth, start, sign = [], 0, 0, "+"
    for i, char in enumerate(rhs):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char in "+-" and depth == 0:
            terms.append((sign, rhs[start:i].strip()))
            start, sign = i + 1, char
    terms.append((sign, rhs[start:].strip()))
    return [(sign, term) for sign, term in terms if term]


def _group_bar(term: str) -> int | None:
    """Where the ``|`` of a term ``(expr | group)`` is (index in ``term``), else ``None``."""
    if not (term.startswith("(") and term.endswith(")")):
        return None
    depth = 0
    for i, char in enumerate(term):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(term) - 1:
            return None  # "(a) + ..." or "(a)(b)": not one parenthesised term
        if char == "|" and depth == 1:
            return i
    return None


def split_group_terms(formula: str) -> tuple[str, list[tuple[str, str]]]:
    """``formula`` without its group terms, and each group term as ``(expr, group)``.

    ``"y ~ x + (1 | g)"`` gives ``("y ~ x", [("1", "g")])``; a formula left with no terms
    keeps its intercept, ``"y ~ (1 | g)"`` gives ``"y ~ 1"``.
    """
    lhs, rhs = formula.split("~", 1)
    fixed, groups = [], []
    for sign, term in _top_level_terms(rhs):
        bar = _group_bar(term)
        if bar is None:
            fixed.append((sign, term))
            continue
        if sign == "-":
            raise ValueError(f"formula must add a group term, not subtract it, got '- {term}'")
        expr, group = term[1:bar].strip(), term[bar + 1 : -1].lstrip("|").strip()
        if not expr:
            raise ValueError(f"formula group term {term!r} must have terms before '|', "
                             "e.g. (1 | g) or (x | g)")
        if not group.isidentifier():
            raise ValueError(
                f"formula group term {term!r} must name one grouping column after '|' "
                f"(a plain column name), got {group!r}"
            )
        groups.append((expr, group))
    bad = [term for _, term in fixed if "|" in term]
    if bad:
        raise ValueError(
            f"formula must write a group term in parentheses, (expr | group), got {bad[0]!r}"
        )
    kept = " ".join(f"{sign} {term}" for sign, term in fixed).removeprefix("+ ") or "1"
    return f"{lhs.strip()} ~ {kept}", groups


@dataclass(frozen=True)
class GroupTerm:
    """``(expr | group)`` as fitted: the levels of ``group`` and the columns of ``expr``.

    ``columns`` names the varying columns (``"1"`` for the intercept, then formulaic's
    names); ``z_spec`` is formulaic's model spec of ``expr`` (its categorical levels and
    transform state as seen at fit time).
    """

    expr: str
    group: str
    levels: tuple[Any, ...]
    columns: tuple[str, ...]
    variables: tuple[str, ...]
    z_spec: Any

    @property
    def name(self) -> str:
        """The term as bambi names it, ``"1|g"`` or ``"x|g"``."""
        return f"{self.expr}|{self.group}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The levels as strings, then the new group's slot."""
        return (*map(str, self.levels), NEW_GROUP)

    def data(self, table: pd.DataFrame) -> GroupData:
        """The group index and ``Z`` of the rows of ``table``."""
        Z = evaluate(lambda: self.z_spec.get_model_matrix(table, na_action="ignore"))
        return self._rows(Z, table[self.group])

    def _rows(self, Z: Any, values: pd.Series) -> GroupData:
        """``GroupData`` from formulaic's matrix ``Z`` of ``expr`` and the grouping column."""
        Z = finite_frame(pd.DataFrame(Z), f"group term {self.name!r} column")
        numeric = pd.api.types.is_numeric_dtype
        fitted = pd.Series(self.levels).dtype
        if numeric(values.dtype) != numeric(fitted):
            raise ValueError(
                f"the grouping column {self.group!r} must hold labels of the kind seen when "
                f"fitting ({fitted}, e.g. {self.levels[0]!r}), got dtype {values.dtype}: no "
                "row would match a fitted group"
            )
        position = {level: i for i, level in enumerate(self.levels)}
        index = np.array([position.get(v, len(self.levels)) for v in values], dtype=np.int64)
        return GroupData(term=self, index=index, Z=Z.to_numpy())


def fit_group_term(expr: str, group: str, table: pd.DataFrame) -> GroupData:
    """The rows of ``(expr | group)`` fitted on ``table``; ``.term`` is its ``GroupTerm``
    (levels and ``expr``'s model spec as seen here)."""
    from formulaic import Formula

    formula = Formula(expr)
    Z = evaluate(lambda: formula.get_model_matrix(table, na_action="ignore"))
    columns = tuple("1" if c == _INTERCEPT else str(c) for c in Z.columns)
    if not columns:
        raise ValueError(f"formula group term ({expr} | {group}) must have at least one column")
    values = table[group]
    if values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0):
        raise ValueError(
            f"the grouping column {group!r} must hold labels (integers or strings), got "
            f"non-integer floats such as {values[np.mod(values, 1) != 0].iloc[0]!r}"
        )
    levels = tuple(sorted(pd.unique(values), key=lambda v: (str(type(v)), v)))
    term = GroupTerm(
        expr=expr, group=group, levels=levels, columns=columns,
        variables=tuple(sorted(formula.required_variables | {group})), z_spec=Z.model_spec,
    )
    return term._rows(Z, values)


@dataclass(frozen=True)
class GroupData:
    """The rows of one group term: ``index`` ``(n,)`` (the group of each row, ``len(levels)``
    for a group not seen when fitting) and ``Z`` ``(n, q)``, its varying columns."""

    term: GroupTerm
    index: np.ndarray
    Z: np.ndarray
