"""Linear regression with Student-t noise, robust to outliers: the student_t GLM preset.

    y = intercept + X coef + sigma * t,   t ~ StudentT(df),   df ~ Gamma(2, 0.1) on df > 2

``sigma`` is the scale of the noise (its sd is ``sigma * sqrt(df / (df - 2))``). The
degrees of freedom are learned; restricting them to ``df > 2`` keeps the noise variance
finite, which the predictive sd needs (the Gamma(2, 0.1) prior puts 1.8% of its mass below
2). Everything else (priors, standardisation, predictions) is ``BayesianLinearRegression``'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from torch.distributions import Distribution

from noisybayes.estimators._base import unfitted_on_error
from noisybayes.estimators._glm_model import GLMSpec
from noisybayes.estimators.glm import Approximation
from noisybayes.estimators.linear import BayesianLinearRegression

__all__ = ["StudentTLinearRegression"]


class StudentTLinearRegression(BayesianLinearRegression):
    """``BayesianLinearRegression`` with Student-t noise; ``method`` must be ``"vi"``.

    Args:
        df_prior: the prior on the degrees of freedom; ``None`` is ``Gamma(2, 0.1)``.
        the others: as for ``BayesianLinearRegression``.

    Fitted attributes as for ``BayesianLinearRegression``; ``posterior_`` also holds ``df``.
    """

    def __init__(
        self,
        *,
        fit_intercept: bool = True,
        prior_scale: float | Literal["auto"] | None = "auto",
        noise_prior: Distribution | Literal["auto"] | None = "auto",
        noise_scale: float | None = None,
        df_prior: Distribution | None = None,
        group_prior: Distribution | Literal["auto"] = "auto",
        method: Literal["vi"] = "vi",
        family: Approximation = "auto",
        seed: int | None = 0,
        progress: bool | None = None,
        fit_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            fit_intercept=fit_intercept, prior_scale=prior_scale, noise_prior=noise_prior,
            noise_scale=noise_scale, group_prior=group_prior, method=method, family=family, seed=seed,
            progress=progress, fit_options=fit_options,
        )
        self.df_prior = df_prior

    def _spec(self) -> GLMSpec:
        """The student_t GLM with the identity link and this estimator's priors."""
        prior = self.df_prior
        if prior is not None and not isinstance(prior, Distribution):
            raise TypeError(f"df_prior must be a torch Distribution or None, got {prior!r}")
        df_prior = "auto" if prior is None else prior
        return replace(super()._spec(), family="student_t", df_prior=df_prior)

    @unfitted_on_error
    def fit(self, X: Any, y: Any = None) -> StudentTLinearRegression:
        """As ``BayesianLinearRegression.fit`` (a data source ``X`` included), ``method="vi"``."""
        if self.method != "vi":
            raise ValueError(
                f"method must be 'vi' for the Student-t likelihood (no closed form), "
                f"got {self.method!r}"
            )
        super().fit(X, y)
        return self
