"""Closed-form posteriors of the linear-Gaussian model ``y = X beta + noise``.

Known noise ``sigma`` and prior ``beta ~ N(m0, Lambda0^{-1})``:

    Lambda = X^T X / sigma^2 + Lambda0,   mu = Lambda^{-1} (X^T y / sigma^2 + Lambda0 m0).

Unknown noise, Normal-Inverse-Gamma prior ``beta | s2 ~ N(m0, s2 Lambda0^{-1})``,
``s2 ~ InvGamma(a0, b0)``:

    Lambda = X^T X + Lambda0,  mu = Lambda^{-1}(Lambda0 m0 + X^T y),
    a = a0 + n/2,  b = b0 + (y^T y + m0^T Lambda0 m0 - mu^T Lambda mu) / 2.

``Lambda0 = 0, a0 = -p/2, b0 = 0`` is the reference prior ``p(beta, s2) ∝ 1/s2``.
(Bishop 2006, sec. 3.3; Gelman et al., BDA3, sec. 14.2.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Gamma, MultivariateNormal

from noisybayes._rng import seeded_from

__all__ = [
    "NormalPosterior",
    "NormalInverseGammaPosterior",
    "gaussian_linear_posterior",
    "gaussian_posterior_from_sums",
    "normal_inverse_gamma_from_sums",
    "normal_inverse_gamma_posterior",
]


def _precision_matrix(prior_precision: torch.Tensor | float, p: int, like: torch.Tensor):
    lam = torch.as_tensor(prior_precision, dtype=like.dtype)
    if lam.ndim == 0:
        return lam * torch.eye(p, dtype=like.dtype)
    if lam.ndim == 1:
        return torch.diag(lam)
    return lam


@dataclass(frozen=True)
class NormalPosterior:
    """``beta | y ~ N(loc, precision^{-1})``."""

    loc: torch.Tensor
    precision: torch.Tensor

    @property
    def covariance(self) -> torch.Tensor:
        return torch.cholesky_inverse(torch.linalg.cholesky(self.precision))

    @property
    def scale(self) -> torch.Tensor:
        """Marginal posterior standard deviations."""
        return self.covariance.diagonal().sqrt()

    @property
    def meanfield_scale(self) -> torch.Tensor:
        """The optimal mean-field sds, ``1 / sqrt(Lambda_jj)`` (reverse-KL optimum)."""
        return self.precision.diagonal().rsqrt()


def gaussian_linear_posterior(
    X: torch.Tensor,
    y: torch.Tensor,
    noise_scale: float,
    prior_loc: torch.Tensor | float = 0.0,
    prior_precision: torch.Tensor | float = 0.0,
) -> NormalPosterior:
    """Exact posterior of ``beta`` with known noise (``prior_precision=0``: flat prior)."""
    return gaussian_posterior_from_sums(X.T @ X, X.T @ y, noise_scale, prior_loc,
                                        prior_precision)


def gaussian_posterior_from_sums(
    gram: torch.Tensor,
    moment: torch.Tensor,
    noise_scale: float,
    prior_loc: torch.Tensor | float = 0.0,
    prior_precision: torch.Tensor | float = 0.0,
) -> NormalPosterior:
    """:func:`gaussian_linear_posterior` from the sufficient statistics ``X^T X`` and
    ``X^T y``: precision ``X^T X / s^2 + L0``, mean its inverse times ``X^T y / s^2 + L0 m0``."""
    p = gram.shape[0]
    lam0 = _precision_matrix(prior_precision, p, gram)
    m0 = torch.as_tensor(prior_loc, dtype=gram.dtype).expand(p)
    precision = gram / noise_scale**2 + lam0
    rhs = moment / noise_scale**2 + lam0 @ m0
    loc = torch.cholesky_solve(rhs[:, None], torch.linalg.cholesky(precision))[:, 0]
    return NormalPosterior(loc=loc, precision=precision)


@dataclass(frozen=True)
class NormalInverseGammaPosterior:
    """``beta | s2 ~ N(loc, s2 precision^{-1})``, ``s2 ~ InvGamma(a, b)``."""

    loc: torch.Tensor
    precision: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    @property
    def noise_variance_mean(self) -> torch.Tensor:
        """``E[s2] = b / (a - 1)``; infinite for ``a <= 1`` (too few rows for the prior)."""
        return torch.where(self.a > 1, self.b / (self.a - 1), torch.full_like(self.b, torch.inf))

    @property
    def covariance(self) -> torch.Tensor:
        """``Cov[beta] = b / (a - 1) precision^{-1}`` (marginally multivariate t, 2a df)."""
        inv = torch.cholesky_inverse(torch.linalg.cholesky(self.precision))
        return self.noise_variance_mean * inv

    @property
    def scale(self) -> torch.Tensor:
        return self.covariance.diagonal().sqrt()

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(p + 1,)`` and covariance ``(p + 1, p + 1)`` of ``(beta, log sigma)``:
        ``E[log sigma] = (log b - digamma(a)) / 2``, ``Var[log sigma] = trigamma(a) / 4``,
        uncorrelated with ``beta``."""
        p = self.loc.shape[0]
        mean = torch.cat([self.loc, (0.5 * (self.b.log() - torch.digamma(self.a))).reshape(1)])
        covariance = torch.zeros(p + 1, p + 1, dtype=self.loc.dtype)
        covariance[:p, :p] = self.covariance
        covariance[p, p] = 0.25 * torch.polygamma(1, self.a)
        return mean, covariance

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` joint draws: ``beta`` ``(n, p)`` and the noise sd ``sigma`` ``(n,)``."""
        with seeded_from(generator):
            s2 = 1.0 / Gamma(self.a, self.b).sample((n,))
            tril = torch.linalg.cholesky(
                torch.cholesky_inverse(torch.linalg.cholesky(self.precision))
            )
            eps = MultivariateNormal(torch.zeros_like(self.loc), scale_tril=tril).sample((n,))
        return self.loc + eps * s2.sqrt()[:, None], s2.sqrt()


def normal_inverse_gamma_posterior(
    X: torch.Tensor,
    y: torch.Tensor,
    prior_loc: torch.Tensor | float = 0.0,
    prior_precision: torch.Tensor | float = 0.0,
    a0: float | None = None,
    b0: float = 0.0,
) -> NormalInverseGammaPosterior:
    """Exact posterior with unknown noise; defaults give the reference prior ``∝ 1/s2``."""
    n, p = X.shape
    lam0 = _precision_matrix(prior_precision, p, X)
    m0 = torch.as_tensor(prior_loc, dtype=X.dtype).expand(p)
    a0 = -p / 2 if a0 is None else a0
    precision = X.T @ X + lam0
    loc = torch.cholesky_solve((lam0 @ m0 + X.T @ y)[:, None], torch.linalg.cholesky(precision))[
        :, 0
    ]
    a = torch.as_tensor(a0 + n / 2, dtype=X.dtype)
    resid, shift = y - X @ loc, loc - m0
    b = b0 + 0.5 * (resid @ resid + shift @ lam0 @ shift)
    if float(a) <= 0:
        raise ValueError(
            f"X must have more than {n - 2 * float(a)} rows for this prior (the posterior of "
            f"the noise is improper), got shape {tuple(X.shape)}"
        )
    return NormalInverseGammaPosterior(loc=loc, precision=precision, a=a, b=torch.as_tensor(b))


def normal_inverse_gamma_from_sums(
    gram: torch.Tensor,
    moment: torch.Tensor,
    sum_of_squares: torch.Tensor | float,
    n_data: int,
    a0: float | None = None,
    b0: float = 0.0,
) -> NormalInverseGammaPosterior:
    """:func:`normal_inverse_gamma_posterior` under a flat ``beta`` prior (``Lambda0 = 0``)
    from the sums ``X^T X``, ``X^T y``, ``y^T y`` and the row count:
    ``Lambda = X^T X``, ``mu = Lambda^{-1} X^T y``, ``a = a0 + n/2``,
    ``b = b0 + (y^T y - mu^T Lambda mu) / 2``."""
    p = gram.shape[0]
    a0 = -p / 2 if a0 is None else a0
    loc = torch.cholesky_solve(moment[:, None], torch.linalg.cholesky(gram))[:, 0]
    a = torch.as_tensor(a0 + n_data / 2, dtype=gram.dtype)
    residual = torch.as_tensor(sum_of_squares, dtype=gram.dtype) - moment @ loc
    if float(a) <= 0:
        raise ValueError(
            f"n_data must be more than {n_data - 2 * float(a)} rows for this prior (the "
            f"posterior of the noise is improper), got {n_data}"
        )
    b = b0 + 0.5 * residual.clamp(min=0.0)
    return NormalInverseGammaPosterior(loc=loc, precision=gram, a=a, b=b)
