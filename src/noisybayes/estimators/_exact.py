"""The closed-form posterior of the Gaussian GLM with the identity link.

    y = intercept + X coef + sigma * eps,   eps ~ N(0, 1)

Known ``sigma`` with a Normal or flat prior on ``coef``: a Gaussian posterior of
``(intercept, coef)``. Unknown ``sigma`` with flat priors on ``coef`` and ``sigma``: the
Normal-Inverse-Gamma limit (``p(s2) ∝ s2^(-1/2)``, i.e. ``a0 = -(p + 1) / 2``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Normal

from noisybayes._rng import make_generator
from noisybayes.estimators._glm_model import GLMModel, GLMSpec
from noisybayes.infer.posterior import FitInfo, GaussianPosterior
from noisybayes.math.conjugate import (
    NormalInverseGammaPosterior,
    gaussian_linear_posterior,
    normal_inverse_gamma_posterior,
)
from noisybayes.math.families import FullRank
from noisybayes.model.layout import ParamLayout

__all__ = ["exact_posterior"]


class _NormalInverseGammaDraws(nn.Module):
    """The exact posterior with unknown noise, in the unconstrained ``(intercept, coef,
    log sigma)`` coordinates that ``Posterior`` reads: ``mean``, ``variance``, ``rsample``."""

    def __init__(self, posterior: NormalInverseGammaPosterior) -> None:
        super().__init__()
        self.exact = posterior

    def mean(self) -> torch.Tensor:
        a, b = self.exact.a, self.exact.b
        log_sigma = 0.5 * (torch.log(b) - torch.digamma(a))
        return torch.cat([self.exact.loc, log_sigma.reshape(1)])

    def variance(self) -> torch.Tensor:
        log_sigma_var = 0.25 * torch.polygamma(1, self.exact.a)
        return torch.cat([self.exact.covariance.diagonal(), log_sigma_var.reshape(1)])

    def rsample(self, n: int, *, generator: torch.Generator | None = None, **_: Any):
        beta, sigma = self.exact.sample(n, make_generator(None, generator))
        return torch.cat([beta, sigma.log()[:, None]], dim=1)


def exact_posterior(
    spec: GLMSpec, model: GLMModel, X: torch.Tensor, y: torch.Tensor
) -> GaussianPosterior:
    """The exact ``GaussianPosterior`` of ``model`` (built from ``spec``: gaussian, identity link)
    given ``X`` ``(N, d)`` and ``y`` ``(N,)`` on the user's scale."""
    design = torch.cat([torch.ones_like(X[:, :1]), X], 1) if spec.fit_intercept else X
    coef_prior = model.param_specs["coef"].prior
    precision = torch.zeros(design.shape[1], dtype=X.dtype)
    if coef_prior is not None:
        if not isinstance(coef_prior, Normal):
            raise ValueError("method='exact' needs a Normal or flat coefficient prior")
        precision[-X.shape[1] :] = coef_prior.scale.pow(-2)
    if spec.noise_scale is not None:
        exact = gaussian_linear_posterior(design, y, spec.noise_scale, 0.0, precision)
        family = FullRank(exact.loc, torch.linalg.cholesky(exact.covariance))
        family.requires_grad_(False)
    else:
        if coef_prior is not None or model.param_specs["sigma"].prior is not None:
            name = spec.dispersion_argument
            raise ValueError(
                f"method='exact' with unknown noise needs flat priors: prior_scale=None and "
                f"{name}=None, got prior_scale={spec.prior_scale!r} and "
                f"{name}={spec.dispersion_prior!r}"
            )
        exact_nig = normal_inverse_gamma_posterior(design, y, a0=-(design.shape[1] + 1) / 2)
        family = _NormalInverseGammaDraws(exact_nig)  # type: ignore[assignment]
    data = ((model.standardise_x(X),), model.standardise_y(y))
    info = FitInfo.closed_form(y.shape[0])
    return GaussianPosterior(model, ParamLayout(model), family, info, data)
