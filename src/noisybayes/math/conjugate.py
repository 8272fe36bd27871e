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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import Gamma, MultivariateNormal

from noisybayes._rng import seeded_from

__all__ = [
    "NoiseGridPosterior",
    "NormalPosterior",
    "NormalInverseGammaPosterior",
    "gaussian_linear_posterior",
    "gaussian_posterior_from_sums",
    "noise_grid_posterior",
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


@dataclass(frozen=True)
class NoiseGridPosterior:
    """The posterior of ``y = intercept + X beta + sigma eps`` (``X`` ``(N, p)`` with centred
    columns) given ``sigma``, ``beta ~ N(0, diag(prior_sd)^2)`` and a flat intercept:

        gamma = beta / prior_sd,  X diag(prior_sd) = U diag(s) V^T,
        V^T gamma | sigma, y ~ N(s (U^T y) / (s^2 + sigma^2), sigma^2 / (s^2 + sigma^2)),
        intercept | sigma, y ~ N(mean(y), sigma^2 / N),

    with ``P(sigma = sigma_k | y) = weight_k`` on a grid of noise sds ``sigma`` ``(K,)``.
    ``s`` and ``uty = U^T y`` are padded with zeros to ``(p,)``; ``V`` is ``(p, p)``.
    """

    sigma: torch.Tensor
    weight: torch.Tensor
    s: torch.Tensor
    uty: torch.Tensor
    V: torch.Tensor
    prior_sd: torch.Tensor
    y_mean: float
    n_data: int
    intercept: bool

    def _conditionals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and variances ``(K, p)`` of ``V^T gamma`` given each ``sigma_k``."""
        denominator = self.s.pow(2) + self.sigma.pow(2)[:, None]
        return self.s * self.uty / denominator, self.sigma.pow(2)[:, None] / denominator

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of ``(intercept, beta, log sigma)`` (the intercept only when
        fitted): the covariance of the conditional means plus the mean conditional
        covariance; the intercept is uncorrelated with the rest."""
        w = self.weight
        loc, var = self._conditionals()
        joint = torch.cat([loc, self.sigma.log()[:, None]], 1)  # (K, p + 1), rotated coords
        mean = w @ joint
        centred = joint - mean
        covariance = centred.T @ (w[:, None] * centred)
        covariance[:-1, :-1] += torch.diag(w @ var)
        rotate = torch.block_diag(self.prior_sd[:, None] * self.V, torch.ones(1, 1, dtype=w.dtype))
        mean, covariance = rotate @ mean, rotate @ covariance @ rotate.T
        if not self.intercept:
            return mean, covariance
        intercept_var = w @ self.sigma.pow(2) / self.n_data
        mean = torch.cat([mean.new_tensor([self.y_mean]), mean])
        return mean, torch.block_diag(intercept_var.reshape(1, 1), covariance)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` joint draws: ``(intercept, beta)`` ``(n, p + 1)`` (``beta`` ``(n, p)`` without
        an intercept) and the noise sd ``sigma`` ``(n,)``."""
        k = torch.multinomial(self.weight, n, replacement=True, generator=generator)
        loc, var = self._conditionals()
        p = self.s.shape[0]
        eps = torch.randn(n, p + 1, dtype=loc.dtype, generator=generator)
        # gamma = V (loc + var^(1/2) V^T eps): the same draws whatever signs and null-space
        # basis the singular vectors came with
        rotated = loc[k] + var[k].sqrt() * (eps[:, :p] @ self.V)
        beta = (rotated @ self.V.T) * self.prior_sd
        sigma = self.sigma[k]
        if not self.intercept:
            return beta, sigma
        intercept = self.y_mean + sigma / self.n_data**0.5 * eps[:, p]
        return torch.cat([intercept[:, None], beta], 1), sigma


def noise_grid_posterior(
    X: torch.Tensor,
    y: torch.Tensor,
    prior_sd: torch.Tensor,
    log_noise_prior: Callable[[torch.Tensor], torch.Tensor],
    intercept: bool,
    n_grid: int = 400,
) -> NoiseGridPosterior:
    """``NoiseGridPosterior`` of ``y`` ``(N,)`` given ``X`` ``(N, p)`` (columns centred when
    ``intercept``), any prior on ``sigma`` (``log_noise_prior`` gives ``log p(sigma)``):

        p(log sigma | y) ∝ p(sigma) sigma p(y | sigma),
        p(y | sigma) ∝ N(y; 0, Z Z^T + sigma^2 I) sigma^[intercept],  Z = X diag(prior_sd),

    (the flat intercept integrates out the direction of ``1``, whose variance is
    ``sigma^2``), integrated over ``log sigma`` on a uniform grid: a coarse pass over
    ``(e^-25, e^5)`` (for ``y`` of unit sd), then ``n_grid`` points where the coarse weights
    are within ``e^-30`` of their largest. Exact up to the grid's spacing, whatever the
    rank of ``X``; stable as ``sigma -> 0`` because it works in ``Z``'s singular basis.
    """
    n, p = X.shape
    y_mean = float(y.mean()) if intercept else 0.0
    y_c = y - y_mean
    U, s, Vh = torch.linalg.svd(X * prior_sd, full_matrices=True)
    m = s.shape[0]
    uty = U[:, :m].T @ y_c
    residual = (y_c - U[:, :m] @ uty).pow(2).sum()

    def log_weights(log_sigma: torch.Tensor) -> torch.Tensor:
        s2 = log_sigma.mul(2).exp()[:, None]
        log_det = (s.pow(2) + s2).log().sum(1) + (n - m) * 2 * log_sigma
        quadratic = (uty.pow(2) / (s.pow(2) + s2)).sum(1) + residual / s2[:, 0]
        log_lik = -0.5 * (log_det + quadratic) + (log_sigma if intercept else 0.0)
        return log_noise_prior(log_sigma.exp()) + log_sigma + log_lik

    coarse = torch.linspace(-25.0, 5.0, 301, dtype=X.dtype)
    log_w = log_weights(coarse)
    inside = (log_w > log_w.max() - 30).nonzero()[:, 0]
    low, high = coarse[max(int(inside[0]) - 1, 0)], coarse[min(int(inside[-1]) + 1, 300)]
    log_sigma = torch.linspace(float(low), float(high), n_grid, dtype=X.dtype)
    pad = torch.zeros(p - m, dtype=X.dtype)
    return NoiseGridPosterior(
        log_sigma.exp(), torch.softmax(log_weights(log_sigma), 0), torch.cat([s, pad]),
        torch.cat([uty, pad]), Vh.T, prior_sd, y_mean, n, intercept,
    )
