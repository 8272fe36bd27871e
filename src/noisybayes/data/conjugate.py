"""The exact posterior of Bayesian linear regression from one pass over a data source.

With known noise ``sigma`` and prior ``beta ~ N(m0, Lambda0^{-1})`` the data enter the
posterior only through ``X^T X`` and ``X^T y``, sums over rows that chunks add up:

    Lambda = sum_c X_c^T X_c / sigma^2 + Lambda0,   mu = Lambda^{-1} (sum_c X_c^T y_c / sigma^2
    + Lambda0 m0)

(Bishop 2006, sec. 3.3), accumulated in float64 whatever the source's dtype, so memory is
one chunk plus two ``p``-sized sums at any number of rows.
"""

from __future__ import annotations

import torch

from noisybayes._checks import check_positive, check_positive_int
from noisybayes.engine.source import DataSource
from noisybayes.math.conjugate import NormalPosterior, gaussian_posterior_from_sums

__all__ = ["streamed_gaussian_linear_posterior"]


def streamed_gaussian_linear_posterior(
    source: DataSource,
    noise_scale: float,
    prior_loc: torch.Tensor | float = 0.0,
    prior_precision: torch.Tensor | float = 0.0,
    *,
    chunk_rows: int = 65_536,
) -> NormalPosterior:
    """:func:`noisybayes.gaussian_linear_posterior` of the rows of ``source`` (its own rows:
    a shard's for a shard), read once in chunks of ``chunk_rows``; float64 throughout.

    ``source`` must yield one input, the design matrix ``X`` ``(B, p)``, and ``y`` ``(B,)``.
    """
    noise_scale = check_positive("noise_scale", noise_scale)
    chunk_rows = check_positive_int("chunk_rows", chunk_rows)
    gram: torch.Tensor | None = None
    moment: torch.Tensor | None = None
    # the sums do not depend on the order: any fixed generator will do
    order = torch.Generator().manual_seed(0)
    for inputs, y in source.epoch(chunk_rows, order, drop_last=False):
        if len(inputs) != 1 or inputs[0].ndim != 2:
            shapes = [tuple(x.shape) for x in inputs]
            raise ValueError(f"source must yield one input, a matrix X of shape (B, p), got "
                             f"inputs of shapes {shapes}")
        X, y = inputs[0].double(), y.double()
        if gram is None or moment is None:
            gram, moment = X.T @ X, X.T @ y
        else:
            gram += X.T @ X
            moment += X.T @ y
    if gram is None or moment is None:
        raise ValueError("source must yield rows, got an empty pass")
    return gaussian_posterior_from_sums(gram, moment, noise_scale, prior_loc, prior_precision)
