"""The log-uniform weight prior's KL divergence from a Gaussian, as a function of one ratio.

A Gaussian ``q(w) = N(theta, alpha theta^2)`` measured against the improper, scale-invariant
prior ``p(log|w|) = const`` has a KL divergence that depends on ``alpha`` alone (up to an
additive constant; Kingma, Salimans & Welling 2015):

    KL(alpha) = -0.5 log alpha + E_{eps ~ N(0, 1)} log|1 + sqrt(alpha) eps| + const

Molchanov, Ashukha & Vetrov 2017 fit a smooth curve to it, with the constant fixed so that
``KL -> 0`` as ``alpha -> infinity`` (a weight that is pure noise costs nothing):

    KL(alpha) ~= k1 - k1 sigmoid(k2 + k3 log alpha) + 0.5 log(1 + 1/alpha)

Its two limits are the exact ones: ``KL -> 0`` for large ``alpha`` and
``KL ~= k1 - 0.5 log alpha`` for small ``alpha``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["K1", "K2", "K3", "log_alpha", "log_uniform_kl"]

K1, K2, K3 = 0.63576, 1.87320, 1.48695


def log_alpha(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``log alpha = log(scale^2 / loc^2)``: the noise-to-signal ratio of ``N(loc, scale^2)``.

    Elementwise; ``loc = 0`` gives a finite, very large value (the square is floored at the
    dtype's smallest normal number) with a zero gradient in ``loc``.
    """
    floor = torch.finfo(loc.dtype).tiny
    return torch.log(scale.square()) - torch.log(loc.square().clamp_min(floor))


def log_uniform_kl(log_alpha: torch.Tensor) -> torch.Tensor:
    """``KL(N(theta, alpha theta^2) || log-uniform) ~= k1 - k1 sigmoid(k2 + k3 log alpha)
    + 0.5 log(1 + 1/alpha)``, elementwise (Molchanov, Ashukha & Vetrov 2017).

    Written with ``softplus(-log alpha) = log(1 + 1/alpha)``, so it is finite for every
    real ``log_alpha``.
    """
    return K1 - K1 * torch.sigmoid(K2 + K3 * log_alpha) + 0.5 * F.softplus(-log_alpha)
