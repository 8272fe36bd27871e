"""A formula's design streamed from files: ``formula_source("big.parquet", "y ~ x + C(g)")``.

The design is learned from the first chunk of rows (the first record batch of the first
file, in storage order): its columns, categorical levels and transform state, as
``design_matrices`` learns them from a table. Every chunk a pass reads is then built with
that same design (``FormulaSpec.transform``) into the float rows ``[X, y]`` that a
:class:`~noisybayes.data.FileSource` yields, so the source is one input ``X`` ``(B, p)``
(the design columns, named in ``inputs``) and the response ``y``. A category the first
chunk did not hold is an error naming it and the file, never a silent column; so is a
missing value (the row count is taken from the files' metadata before any row is read, so
rows cannot be dropped), and a formula with group terms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from noisybayes._checks import check_positive_int
from noisybayes.data.files import FileSource, Piece
from noisybayes.data.formats import open_dataset, pieces_of
from noisybayes.tables.evaluate import evaluate, finite_frame
from noisybayes.tables.formula import FormulaSpec, Response, design_matrices
from noisybayes.tables.group_terms import split_group_terms

__all__ = ["FormulaSource", "formula_source"]


class FormulaSource(FileSource):
    """A :class:`~noisybayes.data.FileSource` whose rows are ``spec``'s design of the files'
    rows (the module's docstring): ``inputs`` names the design columns, ``y`` the response;
    ``variables`` are the table columns read, ``response_spec`` formulaic's spec of the
    left-hand side."""

    def __init__(self, pieces: list[Piece], schema: Any, spec: FormulaSpec, response_spec: Any,
                 variables: tuple[str, ...], n_data: int, buffer_rows: int) -> None:
        super().__init__(pieces, schema, (spec.columns,), spec.response, n_data, torch.float64,
                         buffer_rows)
        self.spec, self.response_spec, self.variables = spec, response_spec, variables
        self._columns = list(variables)

    def shard(self, rank: int, world_size: int) -> FormulaSource:
        rows = super().shard(rank, world_size)
        return FormulaSource(rows.pieces, self.schema, self.spec, self.response_spec,
                             self.variables, self.n_data, self.buffer_rows)

    def _tensor(self, batch: Any, path: str) -> torch.Tensor:
        """``[X, y]`` ``(rows, p + 1)`` of a record batch, by the learned design."""
        table = batch.to_pandas()
        try:
            X = self.spec.transform(table, missing="error").X
            y = evaluate(lambda: self.response_spec.get_model_matrix(table, na_action="ignore"))
            y = finite_frame(pd.DataFrame(y), "response")
        except ValueError as error:
            raise ValueError(f"the rows of {path!r} must fit the design learned from the first "
                             f"chunk of rows: {error}") from None
        return torch.from_numpy(np.concatenate([X.to_numpy(), y.to_numpy()], 1))


def formula_source(path_or_glob: str | Path, formula: str, *,
                   file_format: Literal["parquet", "csv"] = "parquet",
                   buffer_rows: int = 65_536,
                   response: Response = "numeric") -> FormulaSource:
    """The rows of the Parquet (or CSV) files at ``path_or_glob`` as the design of
    ``formula`` (``"y ~ x1 + C(g) + np.log(x2)"``), learned from the first
    ``buffer_rows`` rows; ``source.spec`` builds the design of new rows as the estimators'
    ``formula_`` does. ``response="labels"`` reads a classifier's response as
    :meth:`~noisybayes.BayesianGLMClassifier.from_formula` does: one column of labels as
    they are (booleans or integer codes; a transformed response is refused)."""
    from formulaic import Formula

    buffer_rows = check_positive_int("buffer_rows", buffer_rows)
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must have the form 'response ~ terms', got {formula!r}")
    if split_group_terms(formula)[1]:
        raise ValueError(f"formula must have no group terms ((x | g)) to be streamed from "
                         f"files, got {formula!r}: fit it from a table in memory")
    dataset = open_dataset(path_or_glob, file_format)
    pieces = pieces_of(dataset, file_format, [], numeric=False)
    if not pieces:
        raise ValueError(f"path_or_glob must name files with rows, got {str(path_or_glob)!r} "
                         "(no rows)")
    first = next(iter(pieces[0].fragment.to_batches(batch_size=buffer_rows))).to_pandas()
    design = design_matrices(formula, first, missing="error", response=response)
    response_spec = evaluate(lambda: Formula(formula).get_model_matrix(first)).lhs.model_spec
    response_variables = tuple(sorted(Formula(formula).lhs.required_variables))
    variables = tuple(dict.fromkeys(response_variables + design.spec.variables))
    pieces = pieces_of(dataset, file_format, list(variables), numeric=False)
    n_data = sum(piece.n_rows for piece in pieces)
    return FormulaSource(pieces, dataset.schema, design.spec, response_spec, variables, n_data,
                         buffer_rows)
