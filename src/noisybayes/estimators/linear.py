"""``BayesianLinearRegression``: the seed's model done right, with scikit-learn conventions.

    y = intercept + X coef + sigma * eps,   eps ~ N(0, 1)

The noise scale ``sigma`` is learned through the Gaussian likelihood (not MSE). Priors are
stated on the user's scale; the fit runs on standardised data (the likelihood of the
standardised ``y`` differs by a constant, so the posterior is the same) with parameters
kept on the user's scale, and the Laplace whitening in ``nb.fit`` does the conditioning.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import nn
from torch.distributions import (
    Distribution,
    Exponential,
    Normal,
    constraints,
)

from noisybayes._checks import check_choice, check_positive
from noisybayes._rng import make_generator
from noisybayes.estimators._base import (
    LinearPredictor,
    RegressionEstimator,
    coef_prior,
    location_and_scale,
    resolve_prior,
)
from noisybayes.infer.fit import fit
from noisybayes.infer.posterior import FitInfo, Posterior
from noisybayes.math.conjugate import gaussian_linear_posterior, normal_inverse_gamma_posterior
from noisybayes.math.families import FullRank
from noisybayes.model.layout import ParamLayout
from noisybayes.model.param import param

__all__ = ["BayesianLinearRegression", "LinearModel"]


class LinearModel(LinearPredictor):
    """``y ~ Normal(intercept + X coef, sigma)`` on user-scale parameters.

    ``forward`` receives standardised inputs ``(X - x_mean) / x_scale`` and returns the
    distribution of the standardised target ``(y - y_mean) / y_scale``.
    """

    def __init__(
        self,
        n_features: int,
        x_mean: torch.Tensor,
        x_scale: torch.Tensor,
        y_mean: float,
        y_scale: float,
        coef_prior: Distribution | None,
        noise_prior: Distribution | None,
        noise_scale: float | None,
        fit_intercept: bool,
    ) -> None:
        super().__init__(n_features, x_mean, x_scale, coef_prior, fit_intercept)
        self.y_mean, self.y_scale = y_mean, y_scale
        self.known_noise = noise_scale
        if noise_scale is None:
            self.sigma = param(noise_prior, support=constraints.positive)

    def forward(self, x_std: torch.Tensor) -> Normal:
        loc = (self.linear_predictor(x_std) - self.y_mean) / self.y_scale
        sigma = self.sigma if self.known_noise is None else torch.as_tensor(self.known_noise)
        return Normal(loc, sigma / self.y_scale)


class _NormalInverseGammaDraws(nn.Module):
    """The exact posterior with unknown noise, in the unconstrained ``(intercept, coef,
    log sigma)`` coordinates that ``Posterior`` reads: ``mean``, ``variance``, ``rsample``."""

    def __init__(self, posterior: Any) -> None:
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


class BayesianLinearRegression(RegressionEstimator):
    """Bayesian linear regression with a learned noise scale.

    Args:
        fit_intercept: include an intercept (flat prior).
        prior_scale: sd of the Normal(0, ·) prior on each coefficient, on the user's scale;
            ``"auto"`` is ``2.5 * sd(y) / sd(x_j)`` (weakly informative), ``None`` is flat.
        noise_prior: prior on ``sigma`` on the user's scale; ``"auto"`` is
            ``Exponential(1 / sd(y))``, ``None`` is flat on ``(0, inf)``.
        noise_scale: a known noise sd; ``sigma`` is then fixed, not learned.
        method: ``"vi"`` (``nb.fit``) or ``"exact"`` (closed form: known noise with a Normal
            or flat prior, or unknown noise with flat priors, a Normal-Inverse-Gamma limit).
        family, seed, progress, **fit_options: passed to ``nb.fit``.

    Fitted attributes: ``coef_``, ``intercept_``, ``noise_scale_`` (posterior means),
    ``posterior_`` (an ``nb.Posterior`` over ``intercept``, ``coef``, ``sigma``, on the
    user's scale). ``posterior_`` was fitted to the standardised data it keeps:
    ``posterior_.check()`` (k-hat is scale-free) works as it is, while its own
    ``to_arviz()`` exports standardised observations; the estimator's ``to_arviz()`` and
    ``predict*`` methods answer on the user's scale.
    """

    def __init__(
        self,
        *,
        fit_intercept: bool = True,
        prior_scale: float | Literal["auto"] | None = "auto",
        noise_prior: Distribution | Literal["auto"] | None = "auto",
        noise_scale: float | None = None,
        method: Literal["vi", "exact"] = "vi",
        family: Literal["auto", "meanfield", "lowrank", "fullrank"] = "auto",
        seed: int | None = 0,
        progress: bool = False,
        **fit_options: Any,
    ) -> None:
        self.fit_intercept = fit_intercept
        self.prior_scale = prior_scale
        self.noise_prior = noise_prior
        self.noise_scale = noise_scale
        self.method = method
        self.family = family
        self.seed = seed
        self.progress = progress
        self.fit_options = fit_options

    def __repr__(self) -> str:
        return (
            f"BayesianLinearRegression(method={self.method!r}, family={self.family!r}, "
            f"prior_scale={self.prior_scale!r}, noise_scale={self.noise_scale!r})"
        )

    # --- set-up ----------------------------------------------------------------------
    def _noise_prior(self, y_sd: float, dtype: torch.dtype) -> Distribution | None:
        auto = Exponential(torch.tensor(1.0 / y_sd, dtype=dtype))
        return resolve_prior("noise_prior", self.noise_prior, auto)

    def _model(self, X: torch.Tensor, y: torch.Tensor) -> LinearModel:
        x_mean, x_sd = location_and_scale(X, self.fit_intercept)
        y_loc, y_scale = location_and_scale(y[:, None], self.fit_intercept)
        y_mean, y_sd = float(y_loc[0]), float(y_scale[0])
        known = (
            None if self.noise_scale is None else check_positive("noise_scale", self.noise_scale)
        )
        return LinearModel(
            X.shape[1],
            x_mean,
            x_sd,
            y_mean,
            y_sd,
            coef_prior(self.prior_scale, x_sd, y_sd),
            self._noise_prior(y_sd, X.dtype),
            known,
            self.fit_intercept,
        )

    # --- the estimator contract -------------------------------------------------------
    def fit(self, X: Any, y: Any) -> BayesianLinearRegression:
        """Infer the posterior of ``(intercept, coef, sigma)`` from ``X`` ``(N, d)``, ``y`` ``(N,)``."""
        check_choice("method", self.method, ("vi", "exact"))
        X_t, y_t = self._check_xy(X, y)
        dtype = X_t.dtype
        model = self._model(X_t, y_t)
        x_std = (X_t - model.x_mean) / model.x_scale
        y_std = (y_t - model.y_mean) / model.y_scale
        if self.method == "exact":
            self.posterior_ = self._exact(model, X_t, y_t)
        else:
            self.posterior_ = fit(
                model,
                x_std,
                y_std,
                family=self.family,
                seed=self.seed,
                progress=self.progress,
                **self.fit_options,
            )
        mean = self.posterior_.mean
        self.coef_ = mean["coef"]
        self.intercept_ = mean["intercept"] if self.fit_intercept else torch.zeros((), dtype=dtype)
        self.noise_scale_ = (
            mean["sigma"] if self.noise_scale is None else torch.tensor(self.noise_scale)
        )
        return self

    def _exact(self, model: LinearModel, X: torch.Tensor, y: torch.Tensor) -> Posterior:
        design = torch.cat([torch.ones_like(X[:, :1]), X], 1) if self.fit_intercept else X
        coef_prior = model.param_specs["coef"].prior
        precision = torch.zeros(design.shape[1], dtype=X.dtype)
        if coef_prior is not None:
            if not isinstance(coef_prior, Normal):
                raise ValueError("method='exact' needs a Normal or flat coefficient prior")
            precision[-X.shape[1] :] = coef_prior.scale.pow(-2)
        layout = ParamLayout(model)
        if self.noise_scale is not None:
            exact = gaussian_linear_posterior(design, y, self.noise_scale, 0.0, precision)
            family = FullRank(exact.loc, torch.linalg.cholesky(exact.covariance))
            family.requires_grad_(False)
        else:
            if coef_prior is not None or model.param_specs["sigma"].prior is not None:
                raise ValueError(
                    "method='exact' with unknown noise needs flat priors: prior_scale=None and "
                    f"noise_prior=None, got prior_scale={self.prior_scale!r} and "
                    f"noise_prior={self.noise_prior!r}"
                )
            # flat sigma is p(s2) ∝ s2^(-1/2): a0 = -(p + 1) / 2 in the NIG formulas
            exact_nig = normal_inverse_gamma_posterior(design, y, a0=-(design.shape[1] + 1) / 2)
            family = _NormalInverseGammaDraws(exact_nig)  # type: ignore[assignment]
        info = FitInfo(
            family="exact",
            n_steps=0,
            converged=True,
            reason="closed form",
            elbo_trace=torch.zeros(0),
            n_data=y.shape[0],
            batch_size=y.shape[0],
            n_samples=0,
            seconds=0.0,
            laplace_converged=True,
            laplace_positive_definite=True,
        )
        return Posterior(model, layout, family, info)

    @property
    def _linear_model(self) -> LinearModel:
        return cast(LinearModel, self.posterior_.model)

    def _response_shift_scale(self) -> tuple[float, float]:
        return self._linear_model.y_mean, self._linear_model.y_scale
