"""Gaussian variational families over a flat unconstrained vector ``theta``.

Every family is a Gaussian in whitened coordinates ``z`` composed with a fixed affine
preconditioner: ``theta = shift + T z`` with ``z ~ N(loc, Sigma_z)``, so

    q(theta) = N(shift + T loc, T Sigma_z T^T),   H[q(theta)] = H[q(z)] + log|det T|.

``T`` is a vector (diagonal) for mean-field and low-rank, which keeps those families what
their names say in ``theta``; full-rank accepts any square ``T``. Scales are stored as
free variables mapped through ``softplus`` (never ``abs``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    Distribution,
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
)

__all__ = [
    "FAMILIES",
    "Draws",
    "FullRank",
    "GaussianFamily",
    "LowRank",
    "MeanField",
    "inverse_softplus",
]

_LOG_2PI_E = math.log(2 * math.pi) + 1.0


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """``softplus^{-1}(x) = x + log(1 - exp(-x))`` for ``x > 0``."""
    return x + torch.log(-torch.expm1(-x))


class Draws(NamedTuple):
    """Draws of a family: ``theta = shift + T z`` and the whitened ``z``, each ``(n, P)``."""

    theta: torch.Tensor
    z: torch.Tensor


class GaussianFamily(nn.Module):
    """Base class: ``theta = shift + T z``, ``z = loc + F eps``, ``eps ~ N(0, I)``.

    Args:
        shift: ``(P,)`` centre of the whitened coordinates (e.g. the MAP).
        precond: ``T``; ``(P,)`` for a diagonal preconditioner, ``(P, P)`` for a full one.
    """

    name: str = ""
    shift: torch.Tensor
    precond: torch.Tensor
    log_det_precond: torch.Tensor

    def __init__(self, shift: torch.Tensor, precond: torch.Tensor) -> None:
        super().__init__()
        size = shift.shape[-1]
        if precond.shape not in ((size,), (size, size)):
            raise ValueError(
                f"precond must have shape ({size},) or ({size}, {size}), got {tuple(precond.shape)}"
            )
        self.size = size
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("precond", precond.detach().clone())
        if precond.ndim == 1:
            log_det = precond.abs().log().sum()
        else:
            log_det = torch.linalg.slogdet(precond.double())[1].to(shift.dtype)
        self.register_buffer("log_det_precond", log_det)
        self.loc = nn.Parameter(torch.zeros_like(shift))

    # --- to be provided by each family -------------------------------------------------
    @property
    def noise_dim(self) -> int:
        """Width of the standard-normal noise one draw needs."""
        return self.size

    def z_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """Map noise ``(n, noise_dim)`` to whitened draws ``z`` ``(n, P)``."""
        raise NotImplementedError

    def z_factor(self) -> torch.Tensor:
        """``F`` with ``Sigma_z = F F^T``, shape ``(P, noise_dim)``."""
        raise NotImplementedError

    def z_entropy(self) -> torch.Tensor:
        """Entropy of ``q(z)``."""
        raise NotImplementedError

    def set_z_covariance(self, cov: torch.Tensor) -> None:
        """Initialise the scale parameters to match ``Sigma_z = cov`` as well as the family can."""
        raise NotImplementedError

    def z_distribution(self) -> Distribution:
        """``q(z)`` as a ``torch.distributions`` object."""
        raise NotImplementedError

    def _scale_rows(self, factor: torch.Tensor) -> None:
        """``F <- diag(factor) F``: ``Sigma_z <- D Sigma_z D`` with ``D = diag(factor)``."""
        raise NotImplementedError

    def recentre(self) -> torch.Tensor:
        """The same ``q`` in coordinates centred and scaled to it: ``shift <- E[theta]``,
        ``T <- T D``, ``loc <- 0``, ``Sigma_z <- D^-1 Sigma_z D^-1`` with ``D`` the diagonal of
        ``q(z)``'s sds, so that each ``z_j`` has sd 1. Returns ``D``'s diagonal (``P,``): old
        ``z = loc + D z_new``."""
        with torch.no_grad():
            sd = self.z_factor().pow(2).sum(1).sqrt()
            self.shift.copy_(self.mean())
            self.loc.zero_()
            self.precond.mul_(sd if self.precond.ndim == 1 else sd[None, :])
            self.log_det_precond.add_(sd.log().sum())
            self._scale_rows(sd.reciprocal())
        return sd

    # --- shared ------------------------------------------------------------------------
    def to_theta(self, z: torch.Tensor) -> torch.Tensor:
        """``theta = shift + T z`` for ``z`` of shape ``(..., P)``."""
        if self.precond.ndim == 1:
            return self.shift + z * self.precond
        return self.shift + z @ self.precond.T

    def rsample(
        self, n: int, *, generator: torch.Generator | None = None, antithetic: bool = False
    ) -> torch.Tensor:
        """``n`` reparameterised draws of ``theta``, shape ``(n, P)``.

        With ``antithetic=True`` the second half of the noise is the negated
        first half, which makes the estimated gradient of ``E_q[f]`` exact for quadratic ``f``.
        """
        return self.draw(n, generator=generator, antithetic=antithetic).theta

    def entropy(self) -> torch.Tensor:
        """``H[q(theta)] = H[q(z)] + log|det T|``."""
        return self.z_entropy() + self.log_det_precond

    def draw(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Draws:
        """``n`` reparameterised draws, ``theta`` and ``z``, each ``(n, P)``.

        With ``antithetic=True`` the second half of the noise is the negated first half.
        """
        half = (n + 1) // 2 if antithetic else n
        eps = torch.randn(
            half,
            self.noise_dim,
            generator=generator,
            dtype=self.shift.dtype,
            device=self.shift.device,
        )
        if antithetic:
            eps = torch.cat([eps, -eps])[:n]
        return self.from_noise(eps)

    def from_noise(self, eps: torch.Tensor) -> Draws:
        """The draws ``theta`` and ``z`` that standard-normal noise ``(n, noise_dim)`` maps to."""
        z = self.z_from_noise(eps)
        return Draws(self.to_theta(z), z)

    def log_prob(self, draws: Draws) -> torch.Tensor:
        """``log q(theta) = log q(z) - log|det T|`` for each draw, ``(n,)``."""
        return self.z_distribution().log_prob(draws.z) - self.log_det_precond

    def expected_quadratic(self, matrix: torch.Tensor) -> torch.Tensor:
        """``E_q[z^T A z] / 2 = (loc^T A loc + tr(A F F^T)) / 2`` for a ``(P, P)`` matrix ``A``."""
        f = self.z_factor()
        return 0.5 * (self.loc @ matrix @ self.loc + ((matrix @ f) * f).sum())

    def mean(self) -> torch.Tensor:
        """Mean of ``theta``, ``(P,)``."""
        return self.to_theta(self.loc)

    def factor(self) -> torch.Tensor:
        """``G`` with ``Cov[theta] = G G^T``, shape ``(P, noise_dim)``."""
        f = self.z_factor()
        if self.precond.ndim == 1:
            return self.precond[:, None] * f
        return self.precond @ f

    def variance(self) -> torch.Tensor:
        """Marginal variances of ``theta``, ``(P,)``."""
        return self.factor().pow(2).sum(-1)

    def covariance(self) -> torch.Tensor:
        """``Cov[theta]``, ``(P, P)``."""
        g = self.factor()
        return g @ g.T

    def distribution(self) -> Distribution:
        """``q(theta)`` as a ``torch.distributions`` object (for ``log_prob`` and ``entropy``)."""
        g = self.factor().double()
        cov = g @ g.T
        jitter = 1e-12 * cov.diagonal().mean()
        eye = torch.eye(self.size, dtype=cov.dtype, device=cov.device)
        tril = torch.linalg.cholesky(cov + jitter * eye)
        return MultivariateNormal(self.mean().double(), scale_tril=tril)


class MeanField(GaussianFamily):
    """Diagonal Gaussian: ``theta_j`` independent, ``sd_j = T_j softplus(rho_j)``."""

    name = "meanfield"

    def __init__(self, shift: torch.Tensor, precond: torch.Tensor) -> None:
        if precond.ndim != 1:
            raise ValueError("precond of a mean-field family must be diagonal (a vector)")
        super().__init__(shift, precond)
        self.raw_scale = nn.Parameter(inverse_softplus(torch.ones_like(shift)))

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale)

    def z_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        return self.loc + eps * self.scale

    def z_factor(self) -> torch.Tensor:
        return torch.diag(self.scale)

    def variance(self) -> torch.Tensor:
        return (self.precond * self.scale).pow(2)

    def z_entropy(self) -> torch.Tensor:
        return self.scale.log().sum() + 0.5 * self.size * _LOG_2PI_E

    def set_z_covariance(self, cov: torch.Tensor) -> None:
        with torch.no_grad():
            self.raw_scale.copy_(inverse_softplus(cov.diagonal().clamp_min(1e-12).sqrt()))

    def _scale_rows(self, factor: torch.Tensor) -> None:
        self.raw_scale.copy_(inverse_softplus(self.scale * factor))

    def z_distribution(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale), 1)

    def distribution(self) -> Distribution:
        return Independent(Normal(self.mean(), self.variance().sqrt()), 1)


class FullRank(GaussianFamily):
    """Full-covariance Gaussian: ``Sigma_z = L L^T`` with ``L`` lower-triangular."""

    name = "fullrank"

    def __init__(self, shift: torch.Tensor, precond: torch.Tensor) -> None:
        super().__init__(shift, precond)
        self.raw_diag = nn.Parameter(inverse_softplus(torch.ones_like(shift)))
        self.off_diag = nn.Parameter(torch.zeros(self.size, self.size, dtype=shift.dtype))

    @property
    def scale_tril(self) -> torch.Tensor:
        return torch.tril(self.off_diag, -1) + torch.diag(F.softplus(self.raw_diag))

    def z_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        return self.loc + eps @ self.scale_tril.T

    def z_factor(self) -> torch.Tensor:
        return self.scale_tril

    def z_entropy(self) -> torch.Tensor:
        return F.softplus(self.raw_diag).log().sum() + 0.5 * self.size * _LOG_2PI_E

    def z_distribution(self) -> Distribution:
        return MultivariateNormal(self.loc, scale_tril=self.scale_tril)

    def log_prob(self, draws: Draws) -> torch.Tensor:
        """``log q(theta)`` from the triangular solve ``L^{-1} (z - loc)``, as
        ``MultivariateNormal.log_prob`` computes it (building one checks shapes with
        ``torch.broadcast_shapes``, whose first call imports sympy, most of a second)."""
        tril = self.scale_tril
        white = torch.linalg.solve_triangular(tril, (draws.z - self.loc).T, upper=False).T
        log_norm = tril.diagonal().log().sum() + 0.5 * self.size * math.log(2 * math.pi)
        return -0.5 * white.pow(2).sum(-1) - log_norm - self.log_det_precond

    def set_z_covariance(self, cov: torch.Tensor) -> None:
        tril = torch.linalg.cholesky(cov.double()).to(cov.dtype)
        with torch.no_grad():
            self.raw_diag.copy_(inverse_softplus(tril.diagonal().clamp_min(1e-12)))
            self.off_diag.copy_(torch.tril(tril, -1))

    def _scale_rows(self, factor: torch.Tensor) -> None:
        self.raw_diag.copy_(inverse_softplus(F.softplus(self.raw_diag) * factor))
        self.off_diag.mul_(factor[:, None])


class LowRank(GaussianFamily):
    """Low-rank plus diagonal: ``Sigma_z = W W^T + diag(d^2)``, ``W`` of shape ``(P, rank)``."""

    name = "lowrank"

    def __init__(self, shift: torch.Tensor, precond: torch.Tensor, rank: int = 2) -> None:
        if precond.ndim != 1:
            raise ValueError("precond of a low-rank family must be diagonal (a vector)")
        super().__init__(shift, precond)
        self.rank = rank
        self.raw_diag = nn.Parameter(inverse_softplus(torch.ones_like(shift)))
        self.cov_factor = nn.Parameter(torch.zeros(self.size, rank, dtype=shift.dtype))

    @property
    def noise_dim(self) -> int:
        return self.size + self.rank

    @property
    def diag(self) -> torch.Tensor:
        return F.softplus(self.raw_diag)

    def z_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        return (
            self.loc + eps[..., : self.size] * self.diag + eps[..., self.size :] @ self.cov_factor.T
        )

    def z_factor(self) -> torch.Tensor:
        return torch.cat([torch.diag(self.diag), self.cov_factor], dim=1)

    def z_entropy(self) -> torch.Tensor:
        return self.z_distribution().entropy()

    def z_distribution(self) -> Distribution:
        return LowRankMultivariateNormal(self.loc, self.cov_factor, self.diag.pow(2))

    def set_z_covariance(self, cov: torch.Tensor) -> None:
        """Probabilistic-PCA fit: ``W = V_k (Lambda_k - s2)^{1/2}``, ``d^2 = s2``.

        ``s2`` is the mean of the eigenvalues left out (half the smallest if none is).
        """
        eigvals, eigvecs = torch.linalg.eigh(cov.double())
        rest = eigvals[: self.size - self.rank]
        s2 = rest.mean() if rest.numel() else 0.5 * eigvals[0]
        s2 = s2.clamp_min(1e-12 * eigvals[-1])
        w = eigvecs[:, -self.rank :] * (eigvals[-self.rank :] - s2).clamp_min(0.0).sqrt()
        with torch.no_grad():
            self.cov_factor.copy_(w.to(cov.dtype))
            self.raw_diag.copy_(inverse_softplus(s2.sqrt().expand(self.size).to(cov.dtype)))

    def _scale_rows(self, factor: torch.Tensor) -> None:
        self.raw_diag.copy_(inverse_softplus(self.diag * factor))
        self.cov_factor.mul_(factor[:, None])


FAMILIES: dict[str, type[GaussianFamily]] = {
    "meanfield": MeanField,
    "lowrank": LowRank,
    "fullrank": FullRank,
}
