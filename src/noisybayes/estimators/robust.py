"""Linear regression with Student-t noise, robust to outliers, fitted by ``nb.fit``.

    y = intercept + X coef + sigma * t,   t ~ StudentT(df),   df ~ Gamma(2, 0.1) on df > 2

``sigma`` is the scale of the noise (its sd is ``sigma * sqrt(df / (df - 2))``). The
degrees of freedom are learned; restricting them to ``df > 2`` keeps the noise variance
finite, which the predictive sd needs (the Gamma(2, 0.1) prior puts 1.8% of its mass below
2). Everything else (priors, standardisation, predictions) is ``BayesianLinearRegression``'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Distribution, Gamma, constraints

from noisybayes.estimators.linear import BayesianLinearRegression, LinearModel
from noisybayes.math.distributions import FiniteVarianceStudentT
from noisybayes.model.param import param

__all__ = ["StudentTLinearModel", "StudentTLinearRegression"]


class StudentTLinearModel(LinearModel):
    """``LinearModel`` with the Normal likelihood replaced by a Student-t with learned ``df``."""

    def __init__(self, base: LinearModel, df_prior: Distribution) -> None:
        specs = base.param_specs
        super().__init__(
            base.coef.shape[0], base.x_mean, base.x_scale, base.y_mean, base.y_scale,
            specs["coef"].prior, specs["sigma"].prior if "sigma" in specs else None,
            base.known_noise, base.fit_intercept,
        )
        self.df = param(df_prior, support=constraints.greater_than(2.0))

    def forward(self, x_std: torch.Tensor) -> FiniteVarianceStudentT:  # type: ignore[override]
        normal = super().forward(x_std)
        return FiniteVarianceStudentT(self.df, normal.loc, normal.scale)


class StudentTLinearRegression(BayesianLinearRegression):
    """``BayesianLinearRegression`` with Student-t noise; ``method`` must be ``"vi"``.

    Args:
        df_prior: the prior on the degrees of freedom; ``None`` is ``Gamma(2, 0.1)``.
        **params: as for ``BayesianLinearRegression``.

    Fitted attributes as for ``BayesianLinearRegression``; ``posterior_`` also holds ``df``.
    """

    def __init__(self, *, df_prior: Distribution | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.df_prior = df_prior

    def fit(self, X: Any, y: Any) -> StudentTLinearRegression:
        if self.method != "vi":
            raise ValueError(
                f"method must be 'vi' for the Student-t likelihood (no closed form), "
                f"got {self.method!r}"
            )
        super().fit(X, y)
        return self

    def _model(self, X: torch.Tensor, y: torch.Tensor) -> LinearModel:
        prior = self.df_prior
        if prior is None:
            prior = Gamma(torch.tensor(2.0, dtype=X.dtype), torch.tensor(0.1, dtype=X.dtype))
        elif not isinstance(prior, Distribution):
            raise TypeError(f"df_prior must be a torch Distribution or None, got {prior!r}")
        return StudentTLinearModel(super()._model(X, y), prior)
