"""The linear estimators fitted from a data source: ``reg.fit(nb.data.Parquet(path, x=[...],
y="y"))``, the rows read in passes, never all held.

One pass over the source sums, in float64, the row count, the column means and the centred
sums of squares and products of ``Z = [X, y]``, chunk by chunk, merged as

    n = n_a + n_b,   m = m_a + (n_b / n) (m_b - m_a),
    M = M_a + M_b + (n_a n_b / n) (m_b - m_a)(m_b - m_a)^T

(Chan, Golub & LeVeque 1983), stable whatever the columns' offsets. From these
(:class:`ColumnMoments`) come what the in-memory fit takes from the rows:

* the standardisation ``x_std = (X - x_mean) / x_scale`` (``Standardisation.of_moments``);
* the Gram matrix of the standardised design ``D = [1, x_std]`` and ``y_std``, whose ranks
  are the identifiability checks (``_identifiability.gram_rank``) and whose sums give the
  exact conjugate posterior (``method="exact"``, ``_exact.exact_posterior_from_sums``).

``method="vi"`` runs ``nb.fit`` on the standardised twin with a :class:`StandardisedSource`,
which standardises each minibatch as it is read. A second pass is not needed for any of
this; ``nb.fit`` then makes its own passes (``noisybayes.infer.streamed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from noisybayes.engine.distributed import World
from noisybayes.engine.source import Batch, DataSource, check_whole
from noisybayes.estimators._base import LinearPredictor, Standardisation
from noisybayes.estimators._exact import DesignSums
from noisybayes.estimators._glm_model import CONTINUOUS, GLMModel, GLMSpec, outside_support
from noisybayes.estimators._identifiability import check_coefficients, check_noise, gram_rank
from noisybayes.infer.data import PASS_ROWS

__all__ = [
    "ColumnMoments",
    "SourcePass",
    "StandardisedSource",
    "check_identified_from_sums",
    "feature_names",
    "read_source",
    "source_argument",
]


class ColumnMoments(NamedTuple):
    """``n_data`` rows of ``c`` columns summarised by their ``mean`` ``(c,)`` and centred sums
    of squares and products ``scatter = sum_i (z_i - mean)(z_i - mean)^T`` ``(c, c)``,
    float64."""

    n_data: int
    mean: torch.Tensor
    scatter: torch.Tensor

    @classmethod
    def of(cls, rows: torch.Tensor) -> ColumnMoments:
        """The moments of ``rows`` ``(n, c)``."""
        rows = rows.double()
        mean = rows.mean(0)
        centred = rows - mean
        return cls(rows.shape[0], mean, centred.T @ centred)

    def merged(self, other: ColumnMoments) -> ColumnMoments:
        """The moments of both sets of rows (the module docstring's update)."""
        n = self.n_data + other.n_data
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n_data / n)
        scatter = self.scatter + other.scatter + torch.outer(delta, delta) * (
            self.n_data * other.n_data / n)
        return ColumnMoments(n, mean, scatter)

    def pooled(self, world: World) -> ColumnMoments:
        """The moments of every process's rows, this process's being ``self``: ``n = sum_r
        n_r``, ``m = sum_r n_r m_r / n``, ``M = sum_r [M_r + n_r (m_r - m)(m_r - m)^T]``, each
        sum all-reduced in float64, so the same on every process."""
        if not world.parallel:
            return self
        n = world.total(self.n_data)
        (weighted,) = world.sum(self.mean * self.n_data)
        mean = weighted / n
        delta = self.mean - mean
        (scatter,) = world.sum(self.scatter + torch.outer(delta, delta) * self.n_data)
        return ColumnMoments(n, mean, scatter)

    @property
    def sd(self) -> torch.Tensor:
        """The columns' population sds, ``sqrt(diag(scatter) / n)``."""
        return (self.scatter.diagonal() / self.n_data).sqrt()

    def gram(self, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``sum_i w_i w_i^T`` for ``w_i = [1, (z_i - shift) / scale]`` ``(c + 1,)``: with
        ``u = (mean - shift) / scale``, ``[[n, n u^T], [n u, S^-1 scatter S^-1 + n u u^T]]``."""
        u = (self.mean - shift) / scale
        n = float(self.n_data)
        inner = self.scatter / torch.outer(scale, scale) + n * torch.outer(u, u)
        top = torch.cat([torch.tensor([n], dtype=u.dtype), n * u])
        return torch.cat([top[None], torch.cat([n * u[:, None], inner], 1)], 0)


class SourcePass(NamedTuple):
    """What one pass over a source gives: the :class:`ColumnMoments` of ``[X, y]``, the
    tensors' dtype, and, for labels, the response's distinct values (the smallest 3, sorted;
    empty otherwise)."""

    moments: ColumnMoments
    dtype: torch.dtype
    values: torch.Tensor

    def pooled(self, world: World) -> SourcePass:
        """The pass over every process's rows, this process's being ``self``: the moments
        all-reduced (:meth:`ColumnMoments.pooled`), the smallest 3 values of any process."""
        if not world.parallel:
            return self
        values = torch.cat([torch.as_tensor(v) for v in world.gathered(self.values)])
        return SourcePass(self.moments.pooled(world), self.dtype, values.unique()[:3])

    def standardisation(self, centre: bool, continuous: bool) -> Standardisation:
        """``Standardisation.of`` the rows, from their moments, in the source's dtype."""
        scaling = Standardisation.of_moments(self.moments.mean, self.moments.sd, centre=centre,
                                             continuous=continuous)
        return scaling._replace(x_mean=scaling.x_mean.to(self.dtype),
                                x_scale=scaling.x_scale.to(self.dtype))

    def design_sums(self, scaling: Standardisation, fit_intercept: bool) -> DesignSums:
        """The ``DesignSums`` of ``D = [1, x_std]`` (``x_std`` without an intercept) and
        ``y_std``, standardised by ``scaling``; float64."""
        double = torch.float64
        shift = torch.cat([scaling.x_mean.double(), torch.tensor([scaling.y_mean], dtype=double)])
        scale = torch.cat([scaling.x_scale.double(), torch.tensor([scaling.y_scale], dtype=double)])
        full = self.moments.gram(shift, scale)
        design = slice(0 if fit_intercept else 1, -1)
        return DesignSums(full[design, design], full[design, -1], full[-1, -1],
                          self.moments.n_data)


def source_argument(source: DataSource, y: Any) -> DataSource:
    """``source`` as ``X`` of an estimator's ``fit``: the whole data (not a shard), with
    ``y=None`` (the source yields it)."""
    if y is not None:
        column = getattr(source, "y", None)
        named = f" (column {column!r})" if isinstance(column, str) else ""
        raise ValueError(
            f"y must be None when X is a data source, which yields the response{named}, got "
            f"{type(y).__name__}")
    return check_whole("X", source)


def feature_names(source: DataSource) -> np.ndarray | None:
    """The columns of ``X`` of a file source (``nb.data.Parquet``, ``nb.data.CSV``), as
    scikit-learn's ``feature_names_in_``; ``None`` for another source."""
    inputs = getattr(source, "inputs", None)
    if (isinstance(inputs, tuple) and len(inputs) == 1 and isinstance(inputs[0], tuple)
            and all(isinstance(name, str) for name in inputs[0])):
        return np.asarray(inputs[0], dtype=object)
    return None


def read_source(source: DataSource, family: str) -> SourcePass:
    """One pass over ``source`` (which must yield one input, ``X`` ``(B, d)``): the moments
    of ``[X, y]``; for ``family="bernoulli"`` the distinct values of ``y`` (the labels),
    for the others a check that ``y`` lies in the family's support (``outside_support``)."""
    moments: ColumnMoments | None = None
    dtype = torch.float64
    values = torch.zeros(0, dtype=torch.float64)
    labels = family == "bernoulli"
    rule, outside, example = None, 0, 0.0
    for inputs, y in source.epoch(PASS_ROWS, torch.Generator().manual_seed(0), drop_last=False):
        if len(inputs) != 1 or inputs[0].ndim != 2 or y.ndim != 1:
            shapes = [tuple(x.shape) for x in inputs]
            raise ValueError(
                "X must be a data source yielding one input, a matrix (B, d) of the columns "
                f"of x, and y of shape (B,), got inputs of shapes {shapes} and y of shape "
                f"{tuple(y.shape)}: give x as one list of columns")
        X = inputs[0]
        dtype = X.dtype if X.is_floating_point() else dtype
        chunk = ColumnMoments.of(torch.cat([X.double(), y.double()[:, None]], 1))
        moments = chunk if moments is None else moments.merged(chunk)
        if labels:  # the 3 smallest values seen: enough to tell 2 classes from more
            values = torch.cat([values, y.double().unique()]).unique()[:3]
            continue
        checked = outside_support(family, y)
        if checked is not None and bool(checked[1].any()):
            example = float(y[checked[1]][0]) if not outside else example
            rule, outside = checked[0], outside + int(checked[1].sum())
    if moments is None:
        raise ValueError("X must be a data source with rows, got an empty pass")
    if outside:
        raise ValueError(f"y must be {rule} for family={family!r}, got {outside} rows outside, "
                         f"e.g. {example!r}")
    return SourcePass(moments, dtype, values)


class StandardisedSource:
    """The rows of ``source`` as a ``LinearPredictor``'s standardised twin reads them:
    ``x_std = (X - x_mean) / x_scale`` and ``y_std = (y - y_mean) / y_scale``, or, given
    ``positive``, labels ``1[y == positive]``; ``n_data``, ``n_rows`` and shards as
    ``source``'s."""

    def __init__(self, source: DataSource, model: LinearPredictor,
                 positive: float | None = None) -> None:
        self.source, self.model, self.positive = source, model, positive

    @property
    def n_data(self) -> int:
        return self.source.n_data

    @property
    def n_rows(self) -> int:
        return self.source.n_rows

    def epoch(
        self, batch_size: int, generator: torch.Generator, *, drop_last: bool
    ) -> Iterator[Batch]:
        dtype = self.model.x_scale.dtype
        for (X,), y in self.source.epoch(batch_size, generator, drop_last=drop_last):
            response = (y == self.positive) if self.positive is not None else y
            yield ((self.model.standardise_x(X.to(dtype)),),
                   self.model.standardise_y(response.to(dtype)))

    def shard(self, rank: int, world_size: int) -> StandardisedSource:
        return StandardisedSource(self.source.shard(rank, world_size), self.model,
                                  self.positive)



def check_identified_from_sums(spec: GLMSpec, model: GLMModel, sums: DesignSums,
                               setting: str = "a data source",
                               instead: str = "fit from arrays in memory") -> bool:
    """``glm._check_identified`` from the ``DesignSums`` of a pass: the ranks of ``D`` and of
    ``[D, y_std]`` (``y`` an exact linear function of ``X`` where they agree) from their Gram
    matrices. Separation and isolated zeros need every row at once (a linear programme), so
    their families are refused a flat coefficient prior here: the message says that
    ``setting`` does not allow it, and suggests ``instead``."""
    n_data = sums.n_data
    rank = gram_rank(sums.gram, n_data)
    check_coefficients(spec.prior_scale, rank, sums.gram.shape[0], n_data)
    if spec.prior_scale is None and spec.family not in CONTINUOUS:
        check = "separation" if spec.family == "bernoulli" else "zero counts isolated by X"
        raise ValueError(
            f"prior_scale=None (a flat prior on the coefficients) with family={spec.family!r} "
            f"needs a check for {check} over all rows at once (a linear programme), which "
            f"{setting} does not allow: give prior_scale='auto' or a number, or {instead}")
    if spec.family not in CONTINUOUS or spec.noise_scale is not None:
        return True
    augmented = torch.cat([torch.cat([sums.gram, sums.moment[:, None]], 1),
                           torch.cat([sums.moment, sums.sum_of_squares.reshape(1)])[None]], 0)
    exact = rank >= n_data or (
        spec.link == "identity" and gram_rank(augmented, n_data) == rank)
    return check_noise(spec.dispersion_argument, model.param_specs["sigma"].prior, rank,
                       n_data, exact)
