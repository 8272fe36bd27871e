"""``BayesianGLM``: generalised linear models, fitted by ``nb.fit`` like the linear regression.

    eta = intercept + X coef,   mu = g^{-1}(eta),   y ~ family(mu, dispersion)

(McCullagh & Nelder 1989, ch. 2). Families and their links (the first is the default):

=================== =================== =================================================
family              link                likelihood
=================== =================== =================================================
``bernoulli``       ``logit``/``probit`` ``Bernoulli(logits=eta)``; probit:
                                        ``logits = log Phi(eta) - log Phi(-eta)``
``poisson``         ``log``             ``Poisson(rate=exp(eta))``
``negative_binomial`` ``log``           mean ``mu``, ``Var = mu + mu^2 / concentration``
``student_t``       ``identity``        ``StudentT(df, mu, sigma)``, ``df > 2``
``gaussian``        ``identity``/``log`` ``Normal(mu, sigma)``
=================== =================== =================================================

Default priors (weakly informative, on the user's scale, after Gelman, Jakulin, Pittau &
Su 2008 and rstanarm): ``coef_j ~ Normal(0, 2.5 / sd(x_j))`` on the link scale of the
logit, probit and log links, ``Normal(0, 2.5 sd(y) / sd(x_j))`` for identity links; a flat
intercept; ``sigma ~ Exponential(1 / sd(y))``; ``concentration ~ Exponential(1)``;
``df ~ Gamma(2, 0.1)`` restricted to ``df > 2``.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch.distributions import (
    Bernoulli,
    Distribution,
    Exponential,
    Gamma,
    NegativeBinomial,
    Normal,
    Poisson,
    constraints,
)

from noisybayes._checks import check_choice
from noisybayes.estimators._base import (
    LinearPredictor,
    RegressionEstimator,
    coef_prior,
    location_and_scale,
    resolve_prior,
)
from noisybayes.infer.fit import fit
from noisybayes.math.distributions import FiniteVarianceStudentT
from noisybayes.model.param import param

__all__ = ["BayesianGLM", "GLMModel", "LINKS"]

FamilyName = Literal["bernoulli", "poisson", "negative_binomial", "student_t", "gaussian"]
LinkName = Literal["logit", "probit", "log", "identity"]

LINKS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("logit", "probit"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
    "student_t": ("identity",),
    "gaussian": ("identity", "log"),
}
_CONTINUOUS = ("student_t", "gaussian")


def probit_logits(eta: torch.Tensor) -> torch.Tensor:
    """``logit(Phi(eta)) = log Phi(eta) - log Phi(-eta)``, stable in both tails."""
    return torch.special.log_ndtr(eta) - torch.special.log_ndtr(-eta)


class GLMModel(LinearPredictor):
    """``y ~ family(g^{-1}(intercept + X coef))`` on user-scale parameters.

    ``forward`` receives standardised inputs; for the continuous families it returns the
    distribution of the standardised response ``(y - y_mean) / y_scale``.
    """

    def __init__(
        self,
        family: str,
        link: str,
        n_features: int,
        x_mean: torch.Tensor,
        x_scale: torch.Tensor,
        y_mean: float,
        y_scale: float,
        coef_prior: Distribution | None,
        dispersion_prior: Distribution | None,
        df_prior: Distribution | None,
        fit_intercept: bool,
    ) -> None:
        super().__init__(n_features, x_mean, x_scale, coef_prior, fit_intercept)
        self.family, self.link = family, link
        self.y_mean, self.y_scale = y_mean, y_scale
        if family in _CONTINUOUS:
            self.sigma = param(dispersion_prior, support=constraints.positive)
        if family == "student_t":
            self.df = param(df_prior, support=constraints.greater_than(2.0))
        if family == "negative_binomial":
            self.concentration = param(dispersion_prior, support=constraints.positive)

    def forward(self, x_std: torch.Tensor) -> Distribution:
        eta = self.linear_predictor(x_std)
        if self.family == "bernoulli":
            return Bernoulli(logits=eta if self.link == "logit" else probit_logits(eta))
        if self.family == "poisson":
            return Poisson(rate=eta.exp())
        if self.family == "negative_binomial":  # mean = concentration * exp(logits) = exp(eta)
            return NegativeBinomial(self.concentration, logits=eta - self.concentration.log())
        mu = eta if self.link == "identity" else eta.exp()
        loc, scale = (mu - self.y_mean) / self.y_scale, self.sigma / self.y_scale
        if self.family == "student_t":
            return FiniteVarianceStudentT(self.df, loc, scale)
        return Normal(loc, scale)


def check_response(family: str, y: torch.Tensor) -> None:
    """Raise unless ``y`` lies in the family's support: 0/1 labels or non-negative counts."""
    if family == "bernoulli":
        bad, rule = (y != 0) & (y != 1), "0 or 1"
    elif family in ("poisson", "negative_binomial"):
        bad, rule = (y < 0) | (y != y.round()), "a non-negative integer count"
    else:
        return
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise ValueError(
            f"y must be {rule} for family={family!r}, got {int(bad.sum())} rows outside, "
            f"e.g. {float(y[row])!r} at row {row}"
        )


class BayesianGLM(RegressionEstimator):
    """A Bayesian generalised linear model with scikit-learn conventions.

    Args:
        family: the likelihood: ``"bernoulli"``, ``"poisson"``, ``"negative_binomial"``,
            ``"student_t"`` or ``"gaussian"``.
        link: ``None`` for the family's default (``logit``, ``log``, ``log``, ``identity``,
            ``identity``); also ``"probit"`` for bernoulli and ``"log"`` for gaussian.
        fit_intercept: include an intercept (flat prior).
        prior_scale: sd of the Normal(0, ·) prior on each coefficient on the user's scale;
            ``"auto"`` as in the module docstring, ``None`` flat.
        dispersion_prior: the prior on ``sigma`` (gaussian, student_t) or ``concentration``
            (negative_binomial), a torch Distribution on ``(0, inf)``; ``"auto"`` as above,
            ``None`` flat.
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
        approximation: Literal["auto", "meanfield", "lowrank", "fullrank"] = "auto",
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

    # --- set-up ----------------------------------------------------------------------
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

    def _model(self, X: torch.Tensor, y: torch.Tensor, link: str) -> GLMModel:
        x_mean, x_sd = location_and_scale(X, self.fit_intercept)
        y_mean, y_sd = 0.0, 1.0
        if self.family in _CONTINUOUS:
            y_loc, y_scale = location_and_scale(y[:, None], self.fit_intercept)
            y_mean, y_sd = float(y_loc[0]), float(y_scale[0])
        as_tensor = lambda v: torch.tensor(v, dtype=X.dtype)  # noqa: E731
        rate = 1.0 / y_sd if self.family in _CONTINUOUS else 1.0
        dispersion = resolve_prior("dispersion_prior", self.dispersion_prior,
                                 Exponential(as_tensor(rate)))
        df = resolve_prior("df_prior", self.df_prior, Gamma(as_tensor(2.0), as_tensor(0.1)))
        if df is None:
            raise TypeError("df_prior must be a torch Distribution or 'auto', got None")
        return GLMModel(
            self.family, link, X.shape[1], x_mean, x_sd, y_mean, y_sd,
            coef_prior(self.prior_scale, x_sd, y_sd if link == "identity" else 1.0),
            dispersion, df, self.fit_intercept,
        )

    # --- the estimator contract -------------------------------------------------------
    def fit(self, X: Any, y: Any) -> BayesianGLM:
        """Infer the posterior of ``(intercept, coef, dispersion)`` from ``X`` ``(N, d)``,
        ``y`` ``(N,)``."""
        link = self._check_family_and_link()
        X_t, y_t = self._check_xy(X, y)
        check_response(self.family, y_t)
        model = self._model(X_t, y_t, link)
        x_std = (X_t - model.x_mean) / model.x_scale
        y_std = (y_t - model.y_mean) / model.y_scale
        self.posterior_ = fit(
            model, x_std, y_std, family=self.approximation, seed=self.seed,
            progress=self.progress, **self.fit_options,
        )
        mean = self.posterior_.mean
        self.link_ = link
        self.coef_ = mean["coef"]
        self.intercept_ = (
            mean["intercept"] if self.fit_intercept else torch.zeros((), dtype=X_t.dtype)
        )
        name = "concentration" if self.family == "negative_binomial" else "sigma"
        self.dispersion_ = mean.get(name)
        return self

    def _response_shift_scale(self) -> tuple[float, float]:
        model = cast(GLMModel, self.posterior_.model)
        return model.y_mean, model.y_scale
