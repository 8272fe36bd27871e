"""Scores of a predictive distribution, given by draws, against observations.

Every function takes ``draws`` ``(S, n)`` (``S`` predictive draws for each of ``n``
observations) and observations ``y`` ``(n,)``, and returns one value per observation.
References: Gneiting & Raftery (2007), "Strictly proper scoring rules, prediction, and
estimation", JASA 102; Czado, Gneiting & Held (2009), "Predictive model assessment for
count data", Biometrics 65.
"""

from __future__ import annotations

import math

import torch

from noisybayes.math.intervals import equal_tailed

__all__ = [
    "central_coverage",
    "crps_from_draws",
    "crps_normal",
    "ks_uniform",
    "log_mean_exp",
    "probability_integral_transform",
]


def central_coverage(draws: torch.Tensor, y: torch.Tensor, level: float) -> torch.Tensor:
    """``1[q_{(1-level)/2} <= y <= q_{(1+level)/2}]``: whether ``y`` lies in the central
    interval of ``level`` of the draws (empirical quantiles), as 0./1. per observation."""
    lower, upper = equal_tailed(draws, level)
    return ((lower <= y) & (y <= upper)).to(draws.dtype)


def probability_integral_transform(
    draws: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``PIT = P(Y < y) + U P(Y = y)``, ``U ~ Uniform(0, 1)``, with ``P`` the draws'
    empirical distribution: the randomised PIT of Czado et al. (2009), uniform for a
    calibrated forecast; for continuous draws it is the fraction of draws ``<= y``."""
    below = (draws < y).to(draws.dtype).mean(0)
    ties = (draws == y).to(draws.dtype).mean(0)
    if not bool((ties > 0).any()):
        return below
    u = torch.rand(y.shape, generator=generator, dtype=draws.dtype)
    return below + u.to(draws.device) * ties


def crps_from_draws(draws: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``CRPS = E|Y - y| - E|Y - Y'| / 2`` (energy form, Gneiting & Raftery 2007, eq. 21),
    with ``E|Y - Y'|`` the unbiased pairwise mean ``2 / (S (S-1)) sum_i (2i - S - 1) Y_(i)``
    over the sorted draws; lower is better."""
    n_draws = draws.shape[0]
    if n_draws < 2:
        raise ValueError(f"draws must number at least 2 for the CRPS, got {n_draws}")
    absolute = (draws - y).abs().mean(0)
    ordered = draws.sort(dim=0).values
    rank = torch.arange(1, n_draws + 1, dtype=draws.dtype, device=draws.device)
    weights = (2 * rank - n_draws - 1).reshape(-1, *([1] * (draws.ndim - 1)))
    spread = 2 * (weights * ordered).sum(0) / (n_draws * (n_draws - 1))
    return absolute - spread / 2


def crps_normal(loc: torch.Tensor, scale: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``CRPS(N(loc, scale^2), y) = scale [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``,
    ``z = (y - loc) / scale`` (Gneiting & Raftery 2007, eq. 22)."""
    z = (y - loc) / scale
    normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    density = normal.log_prob(z).exp()
    return scale * (z * (2 * normal.cdf(z) - 1) + 2 * density - 1 / math.sqrt(math.pi))


def log_mean_exp(log_values: torch.Tensor) -> torch.Tensor:
    """``log (1/S) sum_s exp(a_s)`` along dim 0, computed stably: the log predictive density
    ``log p(y | data) ≈ log mean_s p(y | theta_s)`` from per-draw log-likelihoods."""
    return torch.logsumexp(log_values, dim=0) - math.log(log_values.shape[0])


def ks_uniform(values: torch.Tensor) -> float:
    """``D = sup_u |F_n(u) - u|``: the Kolmogorov-Smirnov distance of the empirical
    distribution of ``values`` (in ``[0, 1]``) from Uniform(0, 1)."""
    ordered = values.reshape(-1).sort().values.double()
    n = ordered.shape[0]
    rank = torch.arange(1, n + 1, dtype=torch.float64, device=ordered.device)
    return float(torch.maximum(rank / n - ordered, ordered - (rank - 1) / n).max())
