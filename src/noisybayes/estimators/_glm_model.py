"""The generalised linear model behind every linear estimator, and how one is built.

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

Default priors (``"auto"``; weakly informative, on the user's scale, after Gelman, Jakulin,
Pittau & Su 2008 and rstanarm): ``coef_j ~ Normal(0, 2.5 / sd(x_j))`` on the link scale of
the logit, probit and log links, ``Normal(0, 2.5 sd(y) / sd(x_j))`` for identity links; a
flat intercept; ``sigma ~ Exponential(1 / sd(y))``; ``concentration ~ Exponential(1)``;
``df ~ Gamma(2, 0.1)`` restricted to ``df > 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch.distributions import (
    Bernoulli,
    Distribution,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    NegativeBinomial,
    Normal,
    Poisson,
    TransformedDistribution,
    constraints,
)
from torch.distributions.transforms import AffineTransform

from noisybayes._checks import check_positive
from noisybayes.estimators._base import (
    LinearPredictor,
    Standardisation,
    coef_prior,
    resolve_prior,
)
from noisybayes.estimators._group_effects import (
    GroupEffects,
    add_group_params,
    group_effects,
    group_sum,
)
from noisybayes.math.distributions import FiniteVarianceStudentT
from noisybayes.model.layout import ParamLayout
from noisybayes.model.param import param
from noisybayes.tables.group_terms import GroupData

__all__ = [
    "CONTINUOUS",
    "LINKS",
    "GLMModel",
    "GLMSpec",
    "check_response",
    "glm_model",
    "glm_model_of",
    "outside_support",
    "standardised_twin",
    "user_map",
]

FamilyName = Literal["bernoulli", "poisson", "negative_binomial", "student_t", "gaussian"]
LinkName = Literal["logit", "probit", "log", "identity"]

LINKS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("logit", "probit"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
    "student_t": ("identity",),
    "gaussian": ("identity", "log"),
}
CONTINUOUS = ("student_t", "gaussian")


def probit_logits(eta: torch.Tensor) -> torch.Tensor:
    """``logit(Phi(eta)) = log Phi(eta) - log Phi(-eta)``, stable in both tails."""
    return torch.special.log_ndtr(eta) - torch.special.log_ndtr(-eta)


class GLMModel(LinearPredictor):
    """``y ~ family(g^{-1}(intercept + X coef + group effects))`` on user-scale parameters.

    ``forward`` receives standardised inputs (and, with group terms, each term's group
    index and scaled columns, ``_group_effects``); for the continuous families it returns the
    distribution of the standardised response ``(y - y_mean) / y_scale``, whose noise scale
    ``sigma`` is learned or, given ``noise_scale``, fixed.
    """

    def __init__(
        self,
        family: str,
        link: str,
        n_features: int,
        scaling: Standardisation,
        coef_prior: Distribution | None,
        dispersion_prior: Distribution | None,
        df_prior: Distribution | None,
        fit_intercept: bool,
        noise_scale: float | None = None,
        groups: tuple[GroupEffects, ...] = (),
    ) -> None:
        super().__init__(n_features, scaling, coef_prior, fit_intercept)
        self.family, self.link = family, link
        self.noise_scale = noise_scale
        self.groups = groups
        add_group_params(self, groups)
        if family in CONTINUOUS and noise_scale is None:
            self.sigma = param(dispersion_prior, support=constraints.positive)
        if family == "student_t":
            self.df = param(df_prior, support=constraints.greater_than(2.0))
        if family == "negative_binomial":
            self.concentration = param(dispersion_prior, support=constraints.positive)

    def forward(self, x_std: torch.Tensor, *group_inputs: torch.Tensor) -> Distribution:
        eta = self.linear_predictor(x_std) + group_sum(self, self.groups, group_inputs)
        if self.family == "bernoulli":
            return Bernoulli(logits=eta if self.link == "logit" else probit_logits(eta))
        if self.family == "poisson":
            return Poisson(rate=eta.exp())
        if self.family == "negative_binomial":  # mean = concentration * exp(logits) = exp(eta)
            return NegativeBinomial(self.concentration, logits=eta - self.concentration.log())
        mu = eta if self.link == "identity" else eta.exp()
        sigma = (
            self.sigma if self.noise_scale is None
            else torch.tensor(self.noise_scale, dtype=eta.dtype)
        )
        loc, scale = self.standardise_y(mu), sigma / self.y_scale
        if self.family == "student_t":
            return FiniteVarianceStudentT(self.df, loc, scale)
        return Normal(loc, scale)


def outside_support(family: str, y: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """``(rule, bad)``: the family's support in words and the mask of ``y``'s rows outside it
    (0/1 labels, non-negative counts); ``None`` for a family whose support is every number."""
    if family == "bernoulli":
        return "0 or 1", (y != 0) & (y != 1)
    if family in ("poisson", "negative_binomial"):
        return "a non-negative integer count", (y < 0) | (y != y.round())
    return None


def check_response(family: str, y: torch.Tensor) -> None:
    """Raise unless ``y`` lies in the family's support: 0/1 labels or non-negative counts."""
    outside = outside_support(family, y)
    if outside is None:
        return
    rule, bad = outside
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise ValueError(
            f"y must be {rule} for family={family!r}, got {int(bad.sum())} rows outside, "
            f"e.g. {float(y[row])!r} at row {row}"
        )


@dataclass(frozen=True)
class GLMSpec:
    """A generalised linear model as an estimator's arguments ask for it.

    ``family`` and ``link`` as in the module docstring (already checked); the priors as the
    user gave them (a torch Distribution, ``"auto"`` or ``None``: flat), the prior on
    ``sigma`` or ``concentration`` under the argument name ``dispersion_argument`` that
    messages quote; ``noise_scale`` a known ``sigma`` (``None``: learned); ``group_prior``
    the prior of every group-level sd (``_group_effects``).
    """

    family: str
    link: str
    fit_intercept: bool
    prior_scale: float | str | None
    dispersion_prior: Any
    df_prior: Any = "auto"
    noise_scale: float | None = None
    dispersion_argument: str = "dispersion_prior"
    group_prior: Any = "auto"


def glm_model(spec: GLMSpec, X: torch.Tensor, y: torch.Tensor,
              groups: Sequence[GroupData] = ()) -> GLMModel:
    """The ``GLMModel`` of ``spec`` for ``X`` ``(N, d)``, ``y`` ``(N,)`` and the rows of its
    formula's group terms: standardised by ``Standardisation.of`` (the response only for
    continuous families), with the priors resolved as the module docstring says."""
    scaling = Standardisation.of(X, y, centre=spec.fit_intercept,
                                 continuous=spec.family in CONTINUOUS)
    return glm_model_of(spec, scaling, groups, X.dtype)


def glm_model_of(spec: GLMSpec, scaling: Standardisation, groups: Sequence[GroupData] = (),
                 dtype: torch.dtype | None = None) -> GLMModel:
    """The ``GLMModel`` of ``spec`` for data standardised by ``scaling`` (of ``d`` columns:
    ``scaling.x_mean`` ``(d,)``), the priors resolved as the module docstring says."""
    noise_scale = (
        None if spec.noise_scale is None else check_positive("noise_scale", spec.noise_scale)
    )
    dtype = scaling.x_scale.dtype if dtype is None else dtype
    continuous = spec.family in CONTINUOUS
    as_tensor = lambda v: torch.tensor(v, dtype=dtype)  # noqa: E731
    rate = 1.0 / scaling.y_scale if continuous else 1.0
    dispersion = resolve_prior(
        spec.dispersion_argument, spec.dispersion_prior, Exponential(as_tensor(rate))
    )
    df = resolve_prior("df_prior", spec.df_prior, Gamma(as_tensor(2.0), as_tensor(0.1)))
    if df is None:
        raise TypeError("df_prior must be a torch Distribution or 'auto', got None")
    response_sd = scaling.y_scale if spec.link == "identity" else 1.0
    return GLMModel(
        spec.family, spec.link, scaling.x_scale.shape[0], scaling,
        coef_prior(spec.prior_scale, scaling.x_scale, response_sd),
        dispersion, df, spec.fit_intercept, noise_scale,
        group_effects(groups, spec.group_prior, response_sd, dtype),
    )


def _eta_units(model: GLMModel) -> tuple[float, float]:
    """``(shift, scale)`` of the linear predictor in units of the standardised one: the
    response's ``(y_mean, y_scale)`` for the identity link, ``(0, 1)`` otherwise."""
    if model.link == "identity":
        return model.y_mean, model.y_scale
    return 0.0, 1.0


def _scaled(prior: Distribution, factor: float | torch.Tensor) -> Distribution:
    """The distribution of ``factor * sigma`` for ``sigma ~ prior``: the same family with its
    scale changed where the family has one (a ``TransformedDistribution`` otherwise, whose
    shape check imports sympy on first use, most of a second)."""
    if isinstance(prior, Exponential):
        return Exponential(prior.rate / factor)
    if isinstance(prior, HalfCauchy | HalfNormal):
        return type(prior)(prior.scale * factor)
    return TransformedDistribution(prior, AffineTransform(0.0, factor))


def standardised_twin(model: GLMModel) -> GLMModel:
    """``model`` with parameters in the coordinates of its standardised data: the same
    distribution of the data, and the same priors carried over, when

        coef_std = x_scale coef / s,   intercept_std = (intercept + x_mean . coef - m) / s,
        sigma_std = sigma / s,   sd_std = z_scale sd / s   (a group term's sds; ``z`` of its
        non-centred effects unchanged)   (identity link; ``(m, s) = (y_mean, y_scale)``,
        else ``(0, 1)``).

    Its posterior is well scaled whatever the units of ``X`` and ``y``; ``user_map`` takes
    it back."""
    _, scale = _eta_units(model)
    specs = model.param_specs
    coef = specs["coef"].prior if "coef" in specs else None  # none without columns
    if coef is not None:
        assert isinstance(coef, Normal)  # coef_prior builds a Normal
        coef = Normal(coef.loc * model.x_scale / scale, coef.scale * model.x_scale / scale)
    dispersion_name = "concentration" if model.family == "negative_binomial" else "sigma"
    dispersion = specs[dispersion_name].prior if dispersion_name in specs else None
    if dispersion is not None and dispersion_name == "sigma" and scale != 1.0:
        dispersion = _scaled(dispersion, 1.0 / scale)
    n_features = model.x_scale.shape[0]
    ones = torch.ones_like(model.x_scale)
    kept_y = (0.0, 1.0) if model.link == "identity" else (model.y_mean, model.y_scale)
    scaling = Standardisation(torch.zeros_like(ones), ones, *kept_y)
    noise = None if model.noise_scale is None else model.noise_scale / scale
    df = specs["df"].prior if "df" in specs else None
    groups = tuple(
        replace(g, z_scale=torch.ones_like(g.z_scale), sd_prior=_scaled(g.sd_prior, g.z_scale / scale))
        for g in model.groups
    )
    return GLMModel(model.family, model.link, n_features, scaling, coef, dispersion, df,
                    model.fit_intercept, noise, groups)


def user_map(model: GLMModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, b)`` with ``u = A u_std + b`` from the unconstrained parameters of
    ``standardised_twin(model)`` to those of ``model`` (``ParamLayout`` order): ``coef = s
    coef_std / x_scale``, ``intercept = m + s intercept_std - x_mean . coef``, ``log sigma =
    log sigma_std + log s`` (identity link), ``log sd = log sd_std + log(s / z_scale)`` (a
    group term's sds), other parameters unchanged."""
    shift, scale = _eta_units(model)
    blocks = {b.name: b for b in ParamLayout(model).blocks}
    size = max(b.stop for b in blocks.values())
    A = torch.eye(size, dtype=model.x_scale.dtype)
    b = torch.zeros(size, dtype=model.x_scale.dtype)
    coef = slice(blocks["coef"].start, blocks["coef"].stop) if "coef" in blocks else slice(0, 0)
    coef_rows = scale / model.x_scale
    A[coef, coef] = torch.diag(coef_rows)
    if "intercept" in blocks:
        i = blocks["intercept"].start
        A[i, i], A[i, coef], b[i] = scale, -model.x_mean * coef_rows, shift
    if "sigma" in blocks and model.link == "identity":
        b[blocks["sigma"].start] = math.log(scale)
    for g in model.groups:
        b[blocks[g.sd].start : blocks[g.sd].stop] = (scale / g.z_scale).log()
    return A, b
