"""``BayesianLinearRegression``: the gaussian ``BayesianGLM`` with the identity link.

    y = intercept + X coef + sigma * eps,   eps ~ N(0, 1)

The noise scale ``sigma`` is learned through the Gaussian likelihood (not MSE). Priors are
stated on the user's scale; the fit runs on standardised data (the likelihood of the
standardised ``y`` differs by a constant, so the posterior is the same) with parameters in
the standardised coordinates (``_glm_model.standardised_twin``), read back on the user's
scale by an exact affine map, so the answer does not depend on the units of ``X`` or ``y``.
With ``method="exact"``, and where ``X`` fits ``y`` exactly (no posterior mode to start VI
from), the posterior is exact: the closed form of ``_exact`` or, with proper priors on a
learned noise scale or group terms, Gaussian given the scales and the scales integrated on a
grid (``_exact_scales``); ``method="auto"`` (the default) takes that road unless ``family``
or ``fit_options`` configure VI.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Literal, get_args

import torch
from sklearn.base import RegressorMixin
from torch.distributions import Distribution

from noisybayes._checks import check_choice, check_seed
from noisybayes.engine.source import DataSource
from noisybayes.estimators._base import unfitted_on_error
from noisybayes.estimators._exact_scales import grid_dense_columns, grid_scales
from noisybayes.estimators._glm_model import GLMSpec
from noisybayes.estimators.glm import Approximation, GeneralizedLinearEstimator
from noisybayes.infer.prediction import Prediction
from noisybayes.infer.scale_grid import MAX_DENSE, MAX_SCALES

__all__ = ["BayesianLinearRegression", "auto_method"]


def auto_method(family: str, fit_options: dict[str, Any] | None, n_scales: int,
                n_dense: int = 0) -> Literal["vi", "exact"]:
    """``method="auto"``: ``"exact"``, unless ``family`` (other than ``"auto"``) or
    ``fit_options`` configure a variational fit, or the ``n_scales`` to integrate or the
    ``n_dense`` columns each grid point solves are more than the grid takes."""
    configured = family != "auto" or fit_options is not None
    fits = n_scales <= MAX_SCALES and n_dense <= MAX_DENSE
    return "exact" if fits and not configured else "vi"


class BayesianLinearRegression(RegressorMixin, GeneralizedLinearEstimator):
    """Bayesian linear regression with a learned noise scale.

    Args:
        fit_intercept: include an intercept (flat prior).
        prior_scale: sd of the Normal(0, ·) prior on each coefficient, on the user's scale;
            ``"auto"`` is ``2.5 * sd(y) / sd(x_j)`` (weakly informative), ``None`` is flat.
        noise_prior: prior on ``sigma`` on the user's scale; ``"auto"`` is
            ``Exponential(1 / sd(y))``, ``None`` is flat on ``(0, inf)``.
        noise_scale: a known noise sd; ``sigma`` is then fixed, not learned.
        group_prior: the prior of the sd of each group term's effects (formulas with
            ``(x | g)`` terms), a torch Distribution on ``(0, inf)`` on the linear predictor's
            scale; ``"auto"`` is ``HalfNormal(2.5 s / sd(z_j))`` with ``s = sd(y)``.
        method: ``"vi"`` (``nb.fit``), ``"exact"`` (closed form: known noise with a Normal
            or flat prior, or unknown noise with flat priors, a Normal-Inverse-Gamma limit;
            with any other noise prior or with group terms, Gaussian given the scales and
            the scales integrated on a grid: at most four, the noise sd and one sd per
            varying column of each group term) or ``"auto"``: ``"exact"`` where it takes the
            model (no approximation, and faster than VI), unless ``family`` or
            ``fit_options`` are given, which configure ``"vi"``.
        family, seed, progress: passed to ``nb.fit`` (``family`` is the variational family,
            ``BayesianGLM``'s ``approximation``); ``fit_options``: a dict of its other
            arguments (``{"max_steps": 300}``).

    A scikit-learn regressor: ``score`` is the R^2 of the predictive mean.

    From a data source, ``fit(nb.data.Parquet(path, x=[...], y="y"))`` (or ``nb.data.CSV``;
    ``y=None``) reads the rows in passes at constant memory: one pass summing in float64
    gives the standardisation, the identifiability checks and, for ``method="exact"``, the
    posterior from ``X^T X`` and ``X^T y`` (solved in float64 whatever the columns' dtype);
    ``"vi"`` then runs ``nb.fit`` on the source's standardised rows
    (``noisybayes.estimators._streamed``). ``feature_names_in_`` are the columns of ``x``;
    ``predict`` and the other methods take rows in memory. Under ``torch.distributed`` both
    fit data-parallel (``glm.GeneralizedLinearEstimator``): arrays are each process's rows, a
    source is passed whole and read in shards.

    Fitted attributes: ``coef_`` (numpy), ``intercept_``, ``noise_scale_`` (floats; posterior
    means, PSIS-corrected where the fit allowed it: ``summary()`` says),
    ``posterior_`` (an ``nb.Posterior`` over ``intercept``, ``coef``, ``sigma``, on the
    user's scale). ``posterior_`` was fitted to the standardised data it keeps (none when
    fitted from a data source, whose ``check`` then needs the rows):
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
        group_prior: Distribution | Literal["auto"] = "auto",
        method: Literal["auto", "vi", "exact"] = "auto",
        family: Approximation = "auto",
        seed: int | None = 0,
        progress: bool | None = None,
        fit_options: dict[str, Any] | None = None,
    ) -> None:
        self.fit_intercept = fit_intercept
        self.prior_scale = prior_scale
        self.noise_prior = noise_prior
        self.noise_scale = noise_scale
        self.group_prior = group_prior
        self.method = method
        self.family = family
        self.seed = seed
        self.progress = progress
        self.fit_options = fit_options

    def _spec(self) -> GLMSpec:
        """The gaussian GLM with the identity link and this estimator's priors."""
        return GLMSpec(
            "gaussian", "identity", self.fit_intercept, self.prior_scale, self.noise_prior,
            noise_scale=self.noise_scale, dispersion_argument="noise_prior",
            group_prior=self.group_prior,
        )

    def _resolved_method(self, n_design: int) -> Literal["vi", "exact"]:
        """``method``, with ``"auto"`` resolved by :func:`auto_method` for a design of at most
        ``n_design`` columns (0: unknown, a data source) and the formula's group terms."""
        if self.method != "auto":
            return self.method
        groups = self._design_groups
        return auto_method(self.family, self.fit_options,
                           grid_scales(self.noise_scale is None, groups),
                           grid_dense_columns(n_design, groups))

    @unfitted_on_error
    def fit(self, X: Any, y: Any = None) -> BayesianLinearRegression:
        """Infer the posterior of ``(intercept, coef, sigma)`` from ``X`` ``(N, d)``, ``y`` ``(N,)``,
        or from a data source ``X`` (``nb.data.Parquet(path, x=[...], y="y")``) with
        ``y=None``, read in passes (``method="exact"``: one pass summing ``X^T X`` and ``X^T y``
        in float64; ``"vi"``: ``nb.fit`` on its standardised rows)."""
        check_choice("method", self.method, ("auto", "vi", "exact"))
        check_choice("family", self.family, get_args(Approximation))  # also where unused
        if self.method == "exact":  # ignored, as scikit-learn does (a grid over method)
            for name, unused in (("family", self.family != "auto"),
                                 ("fit_options", self.fit_options is not None)):
                if unused:
                    warnings.warn(f"{name}={getattr(self, name)!r} is ignored with "
                                  f"method='exact': the exact posterior runs no variational "
                                  f"fit", UserWarning, stacklevel=3)
        check_seed(self.seed)
        if isinstance(X, DataSource):
            mean = self._fit_glm_source(self._spec(), X, y, approximation=self.family,
                                        method=self._resolved_method(0))
        else:
            X_t, y_t = self._checked_tensors(X, y)
            mean = self._fit_glm(self._spec(), X_t, y_t, approximation=self.family,
                                 method=self._resolved_method(X_t.shape[1] + 1))
        self.noise_scale_ = float(mean["sigma"] if self.noise_scale is None else self.noise_scale)
        return self

    def predict_distribution(self, X: Any, level: float = 0.94,
                             n_samples: int = 2000) -> Prediction:
        """As the other estimators'; where the exact posterior's noise variance has no
        finite mean (a flat prior on sigma and at most ``k + 3`` rows for ``k`` coefficients
        with the intercept: ``a = (n - k - 1) / 2 <= 1``), the predictive, a Student-t with
        ``2a`` degrees of freedom, has no finite variance, nor has ``E[y | x]``: the sds are
        infinite, which averages of draws would hide, and the mean is the t's centre
        ``intercept_ + x . coef_`` (the mean where ``a > 1/2``, which an average of
        infinite-variance draws estimates badly; as for the coefficients, the centre where
        there is no mean)."""
        pred = super().predict_distribution(X, level, n_samples)
        if getattr(self.posterior_.family, "noise_shape", math.inf) > 1:
            return pred
        x_std, _ = self._standardised(X)
        design = x_std * self._model.x_scale + self._model.x_mean
        centre = self.intercept_ + design @ torch.as_tensor(self.coef_, dtype=design.dtype)
        infinite = torch.full_like(pred.sd, math.inf)
        return dataclasses.replace(pred, mean=centre.to(pred.mean.dtype), sd=infinite,
                                   epistemic_sd=infinite, aleatoric_sd=infinite)
