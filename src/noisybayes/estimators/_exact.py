"""The closed-form posterior of the Gaussian GLM with the identity link.

    y = intercept + X coef + sigma * eps,   eps ~ N(0, 1)

Known ``sigma`` with a Normal or flat prior on ``coef``: a Gaussian posterior of
``(intercept, coef)``. Unknown ``sigma`` with flat priors on ``coef`` and ``sigma``: the
Normal-Inverse-Gamma limit (``p(s2) ∝ s2^(-1/2)``, i.e. ``a0 = -(p + 1) / 2``). With a
proper prior on either, or group terms, ``_exact_scales`` integrates the scales on a grid.

Everything is computed on the standardised data, ``theta_std`` in the coordinates of
``x_std`` and ``y_std``, and mapped to the user's scale by the affine ``theta = A theta_std
+ b`` (``_glm_model.user_map``), so the answer does not depend on the units of ``X`` and ``y``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution, Normal

from noisybayes._rng import make_generator
from noisybayes.engine.distributed import World
from noisybayes.estimators._glm_model import GLMModel, GLMSpec, user_map
from noisybayes.estimators._identifiability import design_of
from noisybayes.infer.objective import Data
from noisybayes.infer.posterior import FitInfo, GaussianPosterior
from noisybayes.math.conjugate import (
    NormalInverseGammaPosterior,
    NormalPosterior,
    gaussian_linear_posterior,
    gaussian_posterior_from_sums,
    normal_inverse_gamma_from_sums,
    normal_inverse_gamma_posterior,
)
from noisybayes.math.families import FullRank
from noisybayes.model.layout import ParamLayout

__all__ = ["DesignSums", "exact_posterior", "exact_posterior_from_sums"]


class _MappedDraws(nn.Module):
    """An exact posterior on the standardised scale, read through ``theta = A theta_std + b``
    in the unconstrained ``(intercept, coef, log sigma)`` coordinates that ``Posterior``
    reads: ``mean``, ``variance``, ``rsample``. ``exact`` has ``moments()`` and
    ``sample(n, generator)`` of ``(beta, sigma)``."""

    def __init__(self, exact: Any, A: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.exact, self.A, self.b = exact, A, b
        loc, covariance = exact.moments()
        self._mean = A @ loc + b
        finite = torch.isfinite(covariance)  # a t posterior with <= 2 df has no variance
        variance = (A @ torch.where(finite, covariance, 0.0) @ A.T).diagonal()
        used = (A != 0).to(A.dtype)
        infinite = (used @ (~finite).to(A.dtype) @ used.T).diagonal() > 0
        self._variance = torch.where(infinite, torch.inf, variance)

    def mean(self) -> torch.Tensor:
        return self._mean

    def variance(self) -> torch.Tensor:
        return self._variance

    def rsample(self, n: int, *, generator: torch.Generator | None = None, **_: Any):
        beta, sigma = self.exact.sample(n, make_generator(None, generator))
        return torch.cat([beta, sigma.log()[:, None]], dim=1) @ self.A.T + self.b

    @property
    def noise_shape(self) -> float:
        """``a`` of ``sigma_std^2 ~ InvGamma(a, b)``: the predictive is a Student-t with
        ``2a`` degrees of freedom, whose variance is infinite for ``a <= 1``."""
        return float(self.exact.a)

    def transformed_moments(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``sigma``'s mean and sd in closed form (not from draws, which give finite numbers
        where there are none): ``sigma = e^c sigma_std`` (``c`` the log-scale shift) with
        ``E sigma_std = sqrt(b) Gamma(a - 1/2) / Gamma(a)``, infinite for ``a <= 1/2``, and
        ``E sigma_std^2 = b / (a - 1)``, infinite for ``a <= 1``."""
        a, b = self.exact.a.double(), self.exact.b.double()  # lgamma(a) - lgamma(a - 1/2):
        scale = self.b[-1].exp().double()  # a difference of two large numbers for large n
        mean = torch.where(a > 0.5, (b.log() / 2 + torch.lgamma(a - 0.5) - torch.lgamma(a)).exp(),
                           torch.inf)
        square = torch.where(a > 1, b / (a - 1), torch.inf)
        sd = torch.where(a > 1, (square - mean**2).clamp_min(0).sqrt(), torch.inf)
        dtype = self.b.dtype
        return {"sigma": ((scale * mean).to(dtype), (scale * sd).to(dtype))}


def _design(model: GLMModel, X: torch.Tensor) -> torch.Tensor:
    """``[1, x_std]`` (or ``x_std`` without an intercept), ``(N, k + p)``."""
    return design_of(model.standardise_x(X), model.fit_intercept)


def _prior(model: GLMModel, name: str) -> Distribution | None:
    """The prior of parameter ``name``, ``None`` where flat or undeclared (no ``coef``
    without columns: ``y ~ 1``)."""
    spec = model.param_specs.get(name)
    return None if spec is None else spec.prior


def _standardised_precision(model: GLMModel, size: int) -> torch.Tensor:
    """The prior precisions of ``(b_std, beta_std)``, ``(k + p,)``: 0 where flat;
    ``beta_std_j = coef_j x_scale_j / y_scale`` has sd ``s_j x_scale_j / y_scale``."""
    coef_prior = _prior(model, "coef")
    precision = torch.zeros(size, dtype=model.x_scale.dtype)
    if coef_prior is not None:
        if not isinstance(coef_prior, Normal):
            raise ValueError("method='exact' needs a Normal or flat coefficient prior")
        sd = coef_prior.scale * model.x_scale / model.y_scale
        precision[-model.x_scale.shape[0] :] = sd.pow(-2)
    return precision


def _posterior(model: GLMModel, family: nn.Module, data: Data | None,
               info: FitInfo) -> GaussianPosterior:
    """The posterior of ``family`` over ``model``'s parameters, keeping the standardised rows
    ``data`` it was computed from (``None`` from a data source)."""
    return GaussianPosterior(model, ParamLayout(model), family, info, data)  # type: ignore[arg-type]


class DesignSums(NamedTuple):
    """The sums the exact posterior needs of the standardised design ``D = [1, x_std]`` (or
    ``x_std``) ``(N, k + p)`` and response ``y_std`` ``(N,)``: ``gram = D^T D``, ``moment =
    D^T y_std``, ``sum_of_squares = y_std^T y_std`` and ``n_data = N``."""

    gram: torch.Tensor
    moment: torch.Tensor
    sum_of_squares: torch.Tensor
    n_data: int

    @classmethod
    def of(cls, design: torch.Tensor, y_std: torch.Tensor) -> DesignSums:
        """The sums of the rows of ``design`` ``(N, k + p)`` and ``y_std`` ``(N,)``, float64."""
        design, y_std = design.double(), y_std.double()
        return cls(design.T @ design, design.T @ y_std, y_std @ y_std, design.shape[0])

    def to(self, dtype: torch.dtype) -> DesignSums:
        """The sums in ``dtype``."""
        return DesignSums(self.gram.to(dtype), self.moment.to(dtype),
                          self.sum_of_squares.to(dtype), self.n_data)

    def pooled(self, world: World) -> DesignSums:
        """The sums over every process's rows, this process's being ``self``: each
        all-reduced (in float64), so the same on every process."""
        gram, moment, squares = world.sum(self.gram, self.moment, self.sum_of_squares)
        return DesignSums(gram, moment, squares, world.total(self.n_data))


def exact_posterior(
    spec: GLMSpec, model: GLMModel, X: torch.Tensor, y: torch.Tensor
) -> GaussianPosterior:
    """The exact ``GaussianPosterior`` of ``model`` (built from ``spec``: gaussian, identity link)
    given ``X`` ``(N, d)`` and ``y`` ``(N,)`` on the user's scale; a numerically singular
    posterior precision (columns collinear to rounding) is a ``ValueError`` naming ``X``."""
    design, y_std = _design(model, X), model.standardise_y(y)
    data = ((model.standardise_x(X),), y_std)
    return _closed_form(
        spec, model, design.shape[1], data, y.shape[0],
        lambda noise, precision: gaussian_linear_posterior(design, y_std, noise, 0.0, precision),
        lambda a0: normal_inverse_gamma_posterior(design, y_std, a0=a0),
    )


def exact_posterior_from_sums(spec: GLMSpec, model: GLMModel, sums: DesignSums
                              ) -> GaussianPosterior:
    """:func:`exact_posterior` from the ``DesignSums`` of the data (read in one pass of a data
    source); the posterior keeps no rows (``data=None``)."""
    return _closed_form(
        spec, model, sums.gram.shape[0], None, sums.n_data,
        lambda noise, precision: gaussian_posterior_from_sums(
            sums.gram, sums.moment, noise, 0.0, precision),
        lambda a0: normal_inverse_gamma_from_sums(
            sums.gram, sums.moment, sums.sum_of_squares, sums.n_data, a0=a0),
    )


def _closed_form(
    spec: GLMSpec, model: GLMModel, size: int, data: Data | None, n_data: int,
    known: Callable[[float, torch.Tensor], NormalPosterior],
    unknown: Callable[[float], NormalInverseGammaPosterior],
) -> GaussianPosterior:
    """The exact posterior of ``size = k + p`` standardised coefficients: ``known(noise_std,
    prior_precision)`` with a known noise, ``unknown(a0)`` (the Normal-Inverse-Gamma limit,
    flat priors) without; a singular precision is a ``ValueError`` naming ``X``."""
    try:
        return _solved(spec, model, size, data, n_data, known, unknown)
    except torch.linalg.LinAlgError as error:
        raise ValueError(
            "X must have columns far enough from collinear for method='exact': the posterior "
            "precision is singular to rounding. Give prior_scale='auto' or a number, or drop "
            "near-duplicate columns"
        ) from error


def _solved(
    spec: GLMSpec, model: GLMModel, size: int, data: Data | None, n_data: int,
    known: Callable[[float, torch.Tensor], NormalPosterior],
    unknown: Callable[[float], NormalInverseGammaPosterior],
) -> GaussianPosterior:
    precision = _standardised_precision(model, size)
    info = FitInfo.closed_form(n_data)
    if spec.noise_scale is not None:
        exact = known(spec.noise_scale / model.y_scale, precision)
        A, b = user_map(model)
        scale = A @ torch.linalg.cholesky(exact.covariance)
        family = FullRank(A @ exact.loc + b, scale)  # theta = loc + scale z, z ~ N(0, I)
        family.requires_grad_(False)
        return _posterior(model, family, data, info)
    draws = _MappedDraws(unknown(-(size + 1) / 2), *user_map(model))
    return _posterior(model, draws, data, info)
