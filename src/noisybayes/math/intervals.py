"""Credible intervals from draws."""

from __future__ import annotations

import math

import torch

__all__ = ["hdi", "equal_tailed"]


def hdi(
    draws: torch.Tensor, prob: float = 0.94, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Highest-density interval: the shortest ``[lo, hi]`` holding ``prob`` of the draws
    (of their ``weights``, when given).

    Args:
        draws: ``(n, ...)``; the interval is taken along dim 0 for every other index.
        weights: normalized weights ``(n,)`` of weighted draws (importance sampling);
            ``None``: equal weights.
    Returns:
        ``(lower, upper)``, each of shape ``draws.shape[1:]``.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    if weights is not None:
        n = draws.shape[0]
        if weights.shape != (n,) or not bool(torch.isfinite(weights).all()) or bool(
            (weights < 0).any()) or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(
                f"weights must be {n} finite non-negative numbers summing to 1 (one per draw), "
                f"got shape {tuple(weights.shape)} summing to {float(weights.sum()):.6g}")
        return _weighted_hdi(draws, weights, prob)
    ordered = draws.sort(dim=0).values
    n = ordered.shape[0]
    inside = int(math.floor(prob * n))
    if inside < 1 or inside >= n:
        raise ValueError(f"draws must number at least {math.ceil(1 / (1 - prob))}, got {n}")
    widths = ordered[inside:] - ordered[: n - inside]
    start = widths.argmin(dim=0, keepdim=True)
    lower = ordered.gather(0, start).squeeze(0)
    upper = ordered.gather(0, start + inside).squeeze(0)
    return lower, upper


def _weighted_hdi(
    draws: torch.Tensor, weights: torch.Tensor, prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each start ``i`` of the sorted draws, the first end ``j`` whose weights from ``i``
    to ``j`` reach ``prob``; the narrowest such ``[x_i, x_j]``."""
    n = draws.shape[0]
    columns = draws.reshape(n, -1).T  # (k, n)
    values, order = columns.sort(dim=1)
    mass = weights.double()[order]
    reached = mass.cumsum(dim=1)
    reached[:, -1] = reached[:, -1].clamp_min(1.0)  # rounding must not hide the last draw
    ends = torch.searchsorted(reached, (reached - mass) + prob)
    valid = ends < n
    ends = ends.clamp_max(n - 1)
    widths = torch.where(valid, values.gather(1, ends) - values, torch.inf)
    start = widths.argmin(dim=1, keepdim=True)
    lower = values.gather(1, start).squeeze(1)
    upper = values.gather(1, ends.gather(1, start)).squeeze(1)
    return lower.reshape(draws.shape[1:]), upper.reshape(draws.shape[1:])


def equal_tailed(draws: torch.Tensor, prob: float = 0.94) -> tuple[torch.Tensor, torch.Tensor]:
    """Central interval: the ``(1-prob)/2`` and ``(1+prob)/2`` quantiles along dim 0,
    interpolated between draws; for whole-number draws (counts, a discrete predictive) the
    draws next outside them, so that the bounds are values the variable takes (an
    interpolated upper bound of 2.05 would leave out the count 3)."""
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    q = torch.tensor([(1 - prob) / 2, (1 + prob) / 2], dtype=draws.dtype, device=draws.device)
    whole = bool((draws == draws.round()).all()) and bool(draws.abs().max() < 2**24)
    if not whole:  # (float32 holds only whole numbers from 2^24 on: those are continuous)
        lower, upper = torch.quantile(draws, q, dim=0)
        return lower, upper
    return (torch.quantile(draws, q[0], dim=0, interpolation="lower"),
            torch.quantile(draws, q[1], dim=0, interpolation="higher"))
