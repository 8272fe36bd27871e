"""Credible intervals from draws."""

from __future__ import annotations

import math

import torch

__all__ = ["hdi", "equal_tailed"]


def hdi(draws: torch.Tensor, prob: float = 0.94) -> tuple[torch.Tensor, torch.Tensor]:
    """Highest-density interval: the shortest ``[lo, hi]`` holding ``prob`` of the draws.

    Args:
        draws: ``(n, ...)``; the interval is taken along dim 0 for every other index.
    Returns:
        ``(lower, upper)``, each of shape ``draws.shape[1:]``.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
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


def equal_tailed(draws: torch.Tensor, prob: float = 0.94) -> tuple[torch.Tensor, torch.Tensor]:
    """Central interval: the ``(1-prob)/2`` and ``(1+prob)/2`` quantiles along dim 0."""
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    q = torch.tensor([(1 - prob) / 2, (1 + prob) / 2], dtype=draws.dtype, device=draws.device)
    lower, upper = torch.quantile(draws, q, dim=0)
    return lower, upper
