"""Pareto smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry 2024).

The largest ``M = ceil(min(S/5, 3 sqrt(S)))`` of ``S`` importance ratios are replaced by the
expected order statistics of a generalized Pareto distribution fitted to them (the
empirical-Bayes estimate of Zhang & Stephens 2009, with the weak prior on ``k`` of the
reference implementation); the fitted shape ``k`` is the diagnostic. It computes what
ArviZ's ``psislw`` computes (tested to agree), without importing ArviZ, whose import costs
more than a small fit.
"""

from __future__ import annotations

import math

import torch

__all__ = ["khat_standard_error", "pareto_smoothed_log_weights", "tail_length"]

_PRIOR_K, _PRIOR_SCALE_QUARTILE = 10, 3


def tail_length(n_draws: int) -> int:
    """``M = ceil(min(S/5, 3 sqrt(S)))``: the ratios in the fitted tail."""
    return math.ceil(min(n_draws / 5.0, 3.0 * math.sqrt(n_draws)))


def khat_standard_error(khat: float, n_draws: int) -> float:
    """The asymptotic sd of the Pareto shape estimate, ``(1 + k) / sqrt(M)`` (the maximum
    likelihood rate for ``k > -1/2``; the estimate is also biased upwards on few draws)."""
    return (1.0 + max(khat, 0.0)) / math.sqrt(tail_length(n_draws))


def pareto_smoothed_log_weights(log_ratios: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Normalized smoothed log-weights ``(S,)`` (float64) and the Pareto ``k`` of
    ``log_ratios`` (``inf`` when the tail is too short to fit)."""
    x = log_ratios.detach().double().cpu().clone()
    x = x - x.max()
    order = torch.argsort(x)
    cutoff = max(float(x[order[-tail_length(x.numel()) - 1]]), math.log(torch.finfo(torch.float64).tiny))
    tail = (x > cutoff).nonzero().squeeze(-1)
    khat = math.inf
    if tail.numel() > 4:
        tail = tail[torch.argsort(x[tail])]
        exceedances = x[tail].exp() - math.exp(cutoff)
        khat, sigma = _fit_generalized_pareto(exceedances)
        if math.isfinite(khat) and sigma > 0:
            n = tail.numel()
            probs = (torch.arange(n, dtype=torch.float64) + 0.5) / n
            x[tail] = (_quantile(probs, khat, sigma) + math.exp(cutoff)).log()
            x = x.clamp_max(0.0)
    return x - torch.logsumexp(x, 0), khat


def _fit_generalized_pareto(sorted_exceedances: torch.Tensor) -> tuple[float, float]:
    """Zhang & Stephens' posterior-mean estimate of ``(k, sigma)`` from sorted exceedances,
    then ``k`` shrunk towards 1/2 by a prior worth 10 observations."""
    x = sorted_exceedances
    n = x.numel()
    m = 30 + int(math.sqrt(n))
    grid = 1.0 - torch.sqrt(m / (torch.arange(1, m + 1, dtype=torch.float64) - 0.5))
    grid = grid / (_PRIOR_SCALE_QUARTILE * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    k_grid = torch.log1p(-grid[:, None] * x).mean(1)
    log_lik = n * (torch.log(-grid / k_grid) - k_grid - 1.0)
    weights = 1.0 / (log_lik[None, :] - log_lik[:, None]).exp().sum(1)
    keep = weights >= 10 * torch.finfo(torch.float64).eps
    weights, grid = weights[keep], grid[keep]
    b = float((grid * weights / weights.sum()).sum())
    k = float(torch.log1p(-b * x).mean())
    sigma = -k / b
    return (n * k + _PRIOR_K * 0.5) / (n + _PRIOR_K), sigma


def _quantile(probs: torch.Tensor, k: float, sigma: float) -> torch.Tensor:
    """The generalized Pareto quantile function at ``probs`` in ``(0, 1)``."""
    if abs(k) < torch.finfo(torch.float64).eps:
        return -sigma * torch.log1p(-probs)
    return sigma * torch.expm1(-k * torch.log1p(-probs)) / k
