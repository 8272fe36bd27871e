"""A Gaussian family read through an affine map: ``theta = A theta_inner + b``.

If ``theta_inner = shift + T z`` then ``theta = (A shift + b) + (A T) z``: the same ``z``
(so the same variational parameters) with a new shift and preconditioner, and

    log q(theta) = log q_inner(theta_inner) - log|det A|.

Used to fit a model in well-conditioned coordinates and report it in the user's.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from noisybayes.math.families import GaussianFamily

__all__ = ["AffineFamily"]


class AffineFamily(GaussianFamily):
    """``inner`` (a fitted ``GaussianFamily`` over ``(P,)``) mapped by ``A`` ``(P, P)``
    (invertible) and ``b`` ``(P,)``; it shares ``inner``'s variational parameters."""

    def __init__(self, inner: GaussianFamily, A: torch.Tensor, b: torch.Tensor) -> None:
        precond = inner.precond
        full = A * precond if precond.ndim == 1 else A @ precond
        super().__init__(A @ inner.shift + b, full)
        self.name = inner.name
        self.inner = inner
        self.loc = inner.loc

    @property
    def noise_dim(self) -> int:
        return self.inner.noise_dim

    def z_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        return self.inner.z_from_noise(eps)

    def z_factor(self) -> torch.Tensor:
        return self.inner.z_factor()

    def z_entropy(self) -> torch.Tensor:
        return self.inner.z_entropy()

    def z_distribution(self) -> Distribution:
        return self.inner.z_distribution()

    def set_z_covariance(self, cov: torch.Tensor) -> None:
        self.inner.set_z_covariance(cov)
