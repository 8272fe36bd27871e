"""Whether the data and the priors give a proper posterior with a mode: say so, not numbers.

* A flat coefficient prior needs a design ``[1, X]`` of full column rank (otherwise the
  likelihood is flat along its null space and the posterior is improper).
* A learned noise scale needs residual information: if the design's rank reaches the
  number of rows, ``y`` is fitted exactly, the joint density grows without bound as
  ``sigma -> 0`` and has no mode; a flat noise prior then makes ``p(sigma | y)`` improper
  or too heavy-tailed for a mean.
* A bernoulli likelihood with a flat coefficient prior needs classes that no hyperplane
  separates (Albert & Anderson 1984): under separation the likelihood grows without bound
  along the separating direction. Counts (log link) have the same failure where a direction
  isolates the zeros (all counts zero, or zero wherever some column is positive).

Ranks and separation are judged on the standardised columns, so on no particular units.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog

__all__ = [
    "check_coefficients",
    "check_noise",
    "check_separation",
    "check_zeros",
    "design_of",
    "design_rank",
    "fits_exactly",
    "gram_rank",
    "separating_direction",
    "zeros_direction",
]


def design_of(x_std: torch.Tensor, fit_intercept: bool) -> torch.Tensor:
    """``[1, x_std]`` (or ``x_std`` without an intercept), ``(N, k + d)``; ``d`` may be 0."""
    return torch.cat([x_std.new_ones(len(x_std), 1), x_std], 1) if fit_intercept else x_std


def design_rank(x_std: torch.Tensor, fit_intercept: bool) -> int:
    """The numerical rank of ``[1, x_std]`` (or ``x_std``) for standardised ``x_std`` ``(N, d)``,
    with numpy's tolerance ``max(N, d) * eps * largest singular value``."""
    design = design_of(x_std, fit_intercept)
    return int(torch.linalg.matrix_rank(design.double()))


def gram_rank(gram: torch.Tensor, n_rows: int) -> int:
    """The numerical rank of a design of ``n_rows`` rows from its Gram matrix ``D^T D``
    ``(k, k)`` (standardised columns, summed in a pass over a data source): the eigenvalues
    above ``max(N, k) * eps * largest``, the rounding that sums of ``N`` products carry. So
    singular values of ``D`` below ``sqrt(max(N, k) eps)`` of the largest count as 0, a
    coarser line than :func:`design_rank`'s, which sees the rows."""
    eigenvalues = torch.linalg.eigvalsh(gram.double())
    tolerance = max(n_rows, gram.shape[0]) * torch.finfo(torch.float64).eps
    return int((eigenvalues > tolerance * eigenvalues.max().clamp(min=0.0)).sum())


def separating_direction(x_std: torch.Tensor, y: torch.Tensor, fit_intercept: bool) -> bool:
    """Whether some ``w != 0`` has ``(2 y_i - 1) [1, x_i] . w >= 0`` for every row (complete
    or quasi-complete separation), by Konis's (2007) linear programme:

        max sum_i s_i [1, x_i] . w   subject to   s_i [1, x_i] . w >= 0,  -1 <= w <= 1,

    separated exactly when the optimum is positive."""
    design = design_of(x_std, fit_intercept)
    signed = ((2 * y - 1)[:, None] * design).double().numpy()
    result = linprog(-signed.sum(0), A_ub=-signed, b_ub=np.zeros(len(signed)),
                     bounds=(-1, 1), method="highs")
    scale = np.abs(signed).sum()
    return bool(result.status == 0 and -result.fun > 1e-9 * scale)


def zeros_direction(x_std: torch.Tensor, y: torch.Tensor, fit_intercept: bool) -> bool:
    """Whether counts ``y`` have a direction ``w`` with ``[1, x_i] . w = 0`` where ``y_i > 0``
    and ``<= 0`` where ``y_i = 0``, ``< 0`` somewhere: along it the log-link likelihood
    ``sum_i y_i eta_i - exp(eta_i)`` rises to a limit it never reaches (the zeros' means
    go to 0). The linear programme, as ``separating_direction``'s:

        max -sum_{y_i = 0} [1, x_i] . w   s.t. the above,  -1 <= w <= 1."""
    design = design_of(x_std, fit_intercept)
    rows = design.double().numpy()
    zeros, positive = rows[(y == 0).numpy()], rows[(y > 0).numpy()]
    if len(zeros) == 0:
        return False
    result = linprog(zeros.sum(0), A_ub=zeros, b_ub=np.zeros(len(zeros)),
                     A_eq=positive if len(positive) else None,
                     b_eq=np.zeros(len(positive)) if len(positive) else None,
                     bounds=(-1, 1), method="highs")
    return bool(result.status == 0 and -result.fun > 1e-9 * np.abs(zeros).sum())


def check_coefficients(prior_scale: object, rank: int, n_columns: int, n_rows: int) -> None:
    """Refuse a flat coefficient prior (``prior_scale=None``) on a design ``(n_rows,
    n_columns)`` (intercept included) of lower rank: an improper posterior."""
    if prior_scale is None and rank < n_columns:
        raise ValueError(
            f"prior_scale=None (a flat prior on the coefficients) needs linearly independent "
            f"columns, got a design of rank {rank} for {n_columns} columns (intercept "
            f"included) and {n_rows} rows: collinear columns or more columns than rows leave "
            f"the posterior improper. Give prior_scale='auto' or a number, or drop columns"
        )


def fits_exactly(x_std: torch.Tensor, y_std: torch.Tensor, fit_intercept: bool) -> bool:
    """Whether least squares on ``[1, x_std]`` leaves no residual beyond rounding:
    ``|y - D b|^2 <= 1e-20 |y|^2`` for the standardised ``y_std``."""
    design = design_of(x_std, fit_intercept)
    target = y_std.double()
    solution = torch.linalg.lstsq(design.double(), target[:, None], driver="gelsd").solution
    residual = target - (design.double() @ solution)[:, 0]
    return bool(residual.pow(2).sum() <= 1e-20 * target.pow(2).sum())


def check_noise(argument: str, prior: object, rank: int, n_rows: int, exact: bool) -> bool:
    """Whether the data leave a residual for a learned noise scale: ``False`` when the design
    of rank ``rank`` fits all ``n_rows`` (``exact``: ``fits_exactly``); raises if the noise
    prior (named ``argument``) is flat and fewer than 2 rows are left over, or if ``y`` is
    fitted exactly with rows to spare: ``p(sigma | y)`` then grows like
    ``sigma^-(n_rows - rank)`` at 0, an improper posterior whatever the prior."""
    if exact and n_rows > rank:
        raise ValueError(
            f"y must not be an exact linear function of X for a learned noise scale, got a "
            f"residual of 0 with {n_rows - rank} rows beyond the design's rank {rank}: the "
            f"noise scale's posterior piles up at 0 (improper). Give a known noise_scale, or "
            f"check that y is not computed from X"
        )
    if prior is None and n_rows < rank + 2:
        raise ValueError(
            f"{argument}=None (a flat prior on the noise scale) needs at least 2 more rows "
            f"than the design's rank, got {n_rows} rows and rank {rank}: the data carry too "
            f"little information for the noise scale (its posterior is improper). Give "
            f"{argument}='auto' or a Distribution, a known noise_scale, or more rows"
        )
    return not exact


def check_separation(prior_scale: object, x_std: torch.Tensor, y: torch.Tensor,
                     fit_intercept: bool) -> None:
    """Refuse a flat coefficient prior for 0/1 labels ``y`` that a hyperplane separates."""
    if prior_scale is None and separating_direction(x_std, y, fit_intercept):
        raise ValueError(
            "prior_scale=None (a flat prior on the coefficients) with classes that a "
            "hyperplane in X separates: the likelihood grows without bound along it "
            "(separation), so the posterior is improper and the coefficients would be "
            "arbitrarily large. Give prior_scale='auto' or a number"
        )


def check_zeros(prior_scale: object, x_std: torch.Tensor, y: torch.Tensor,
                fit_intercept: bool) -> None:
    """Refuse a flat coefficient prior for counts whose zeros a direction of ``X`` isolates
    (``zeros_direction``): no mode, an improper posterior."""
    if prior_scale is None and zeros_direction(x_std, y, fit_intercept):
        raise ValueError(
            "prior_scale=None (a flat prior on the coefficients) with zero counts that a "
            "direction in X isolates from the others (all counts zero, or zero wherever a "
            "column is positive): the likelihood rises without bound towards means of 0 there, "
            "so the posterior is improper. Give prior_scale='auto' or a number"
        )
