"""``BayesianGLM``, and the fitting path that every generalised linear estimator shares.

The model, its families, links and default priors are described in ``_glm_model``:

    eta = intercept + X coef,   mu = g^{-1}(eta),   y ~ family(mu, dispersion)

``BayesianLinearRegression`` and ``StudentTLinearRegression`` are presets of it (the
gaussian and student_t families with the identity link); the gaussian one also has the
closed-form posterior of ``_exact``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.distributions import Distribution

from noisybayes._checks import check_choice
from noisybayes.estimators._base import RegressionEstimator
from noisybayes.estimators._exact import exact_posterior
from noisybayes.estimators._glm_model import (
    LINKS,
    FamilyName,
    GLMSpec,
    LinkName,
    check_response,
    glm_model,
)
from noisybayes.infer.fit import fit

__all__ = ["Approximation", "BayesianGLM", "GeneralizedLinearEstimator"]

Approximation = Literal["auto", "meanfield", "lowrank", "fullrank"]  # nb.fit's ``family``


class GeneralizedLinearEstimator(RegressionEstimator):
    """The fit of a ``GLMModel``: by ``nb.fit`` (``method="vi"``) or in closed form
    (``"exact"``); sets ``posterior_``, ``coef_`` and ``intercept_``."""

    progress: bool
    fit_options: dict[str, Any]

    def _fit_glm(
        self,
        spec: GLMSpec,
        X: Any,
        y: Any,
        *,
        approximation: Approximation,
        method: Literal["vi", "exact"] = "vi",
    ) -> dict[str, torch.Tensor]:
        """Fit ``spec``'s model to ``X`` ``(N, d)`` and ``y`` ``(N,)``; returns the posterior
        means by parameter name."""
        X_t, y_t = self._check_xy(X, y)
        check_response(spec.family, y_t)
        model = glm_model(spec, X_t, y_t)
        if method == "exact":
            self.posterior_ = exact_posterior(spec, model, X_t, y_t)
        else:
            self.posterior_ = fit(
                model, model.standardise_x(X_t), model.standardise_y(y_t),
                family=approximation, seed=self.seed, progress=self.progress,
                **self.fit_options,
            )
        mean = self.posterior_.mean
        self.coef_ = mean["coef"]
        self.intercept_ = (
            mean["intercept"] if self.fit_intercept else torch.zeros((), dtype=X_t.dtype)
        )
        return mean


class BayesianGLM(GeneralizedLinearEstimator):
    """A Bayesian generalised linear model with scikit-learn conventions.

    Args:
        family: the likelihood: ``"bernoulli"``, ``"poisson"``, ``"negative_binomial"``,
            ``"student_t"`` or ``"gaussian"``.
        link: ``None`` for the family's default (``logit``, ``log``, ``log``, ``identity``,
            ``identity``); also ``"probit"`` for bernoulli and ``"log"`` for gaussian.
        fit_intercept: include an intercept (flat prior).
        prior_scale: sd of the Normal(0, ·) prior on each coefficient on the user's scale;
            ``"auto"`` as in ``_glm_model``'s docstring, ``None`` flat.
        dispersion_prior: the prior on ``sigma`` (gaussian, student_t) or ``concentration``
            (negative_binomial), a torch Distribution on ``(0, inf)``; ``"auto"``
            (``Exponential(1 / sd(y))``, ``Exponential(1)``), ``None`` flat.
        df_prior: the prior on student_t's ``df`` (on ``df > 2``); ``"auto"`` is Gamma(2, 0.1).
        approximation: the variational family, ``nb.fit``'s ``family`` argument (named
            apart from the likelihood's ``family``).
        seed, progress, **fit_options: passed to ``nb.fit``.

    Fitted attributes: ``coef_``, ``intercept_`` (posterior means, on the link scale),
    ``dispersion_`` (posterior mean of ``sigma`` or ``concentration``; ``None`` for bernoulli
    and poisson), ``link_``, ``posterior_`` (an ``nb.Posterior``).
    """

    def __init__(
        self,
        family: FamilyName = "gaussian",
        link: LinkName | None = None,
        *,
        fit_intercept: bool = True,
        prior_scale: float | Literal["auto"] | None = "auto",
        dispersion_prior: Distribution | Literal["auto"] | None = "auto",
        df_prior: Distribution | Literal["auto"] = "auto",
        approximation: Approximation = "auto",
        seed: int | None = 0,
        progress: bool = False,
        **fit_options: Any,
    ) -> None:
        self.family = family
        self.link = link
        self.fit_intercept = fit_intercept
        self.prior_scale = prior_scale
        self.dispersion_prior = dispersion_prior
        self.df_prior = df_prior
        self.approximation = approximation
        self.seed = seed
        self.progress = progress
        self.fit_options = fit_options

    def __repr__(self) -> str:
        return (
            f"BayesianGLM(family={self.family!r}, link={self.link!r}, "
            f"approximation={self.approximation!r}, prior_scale={self.prior_scale!r})"
        )

    def _check_family_and_link(self) -> str:
        check_choice("family", self.family, tuple(LINKS))
        choices = LINKS[self.family]
        if self.link is None:
            return choices[0]
        if self.link not in choices:
            raise ValueError(
                f"link must be one of {', '.join(map(repr, choices))} for "
                f"family={self.family!r}, got {self.link!r}"
            )
        return self.link

    def fit(self, X: Any, y: Any) -> BayesianGLM:
        """Infer the posterior of ``(intercept, coef, dispersion)`` from ``X`` ``(N, d)``,
        ``y`` ``(N,)``."""
        link = self._check_family_and_link()
        spec = GLMSpec(
            self.family, link, self.fit_intercept, self.prior_scale, self.dispersion_prior,
            self.df_prior,
        )
        mean = self._fit_glm(spec, X, y, approximation=self.approximation)
        self.link_ = link
        name = "concentration" if self.family == "negative_binomial" else "sigma"
        self.dispersion_ = mean.get(name)
        return self
