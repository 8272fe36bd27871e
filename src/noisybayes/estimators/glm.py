"""``BayesianGLM``, and the fitting path that every generalised linear estimator shares.

The model, its families, links and default priors are described in ``_glm_model``:

    eta = intercept + X coef,   mu = g^{-1}(eta),   y ~ family(mu, dispersion)

``BayesianLinearRegression`` and ``StudentTLinearRegression`` are presets of it (the
gaussian and student_t families with the identity link); the gaussian one also has the
closed-form posterior of ``_exact``. The bernoulli family is a classifier,
``BayesianGLMClassifier`` (``glm_classifier``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal, cast

import numpy as np
import torch
from sklearn.base import RegressorMixin
from torch.distributions import Distribution

from noisybayes._checks import check_bool, check_choice
from noisybayes.engine.distributed import World
from noisybayes.engine.source import DataSource
from noisybayes.estimators._base import RegressionEstimator, Standardisation, unfitted_on_error
from noisybayes.estimators._exact import (
    DesignSums,
    exact_posterior,
    exact_posterior_from_sums,
)
from noisybayes.estimators._exact_scales import scale_grid_from_sums, scale_grid_posterior
from noisybayes.estimators._glm_model import (
    CONTINUOUS,
    LINKS,
    GLMModel,
    GLMSpec,
    LinkName,
    check_response,
    glm_model,
    glm_model_of,
    standardised_twin,
    user_map,
)
from noisybayes.estimators._group_effects import group_inputs
from noisybayes.estimators._identifiability import (
    check_coefficients,
    check_noise,
    check_separation,
    check_zeros,
    design_of,
    design_rank,
    fits_exactly,
)
from noisybayes.estimators._streamed import (
    StandardisedSource,
    check_identified_from_sums,
    feature_names,
    read_source,
    source_argument,
)
from noisybayes.infer.fit import fit, threads_for
from noisybayes.infer.posterior import GaussianPosterior
from noisybayes.math.affine import AffineFamily
from noisybayes.model.layout import ParamLayout
from noisybayes.tables.formula import FormulaSpec, unquoted

__all__ = [
    "Approximation",
    "BayesianGLM",
    "GeneralizedLinearEstimator",
    "check_link",
    "fit_options_of",
]

Approximation = Literal["auto", "meanfield", "lowrank", "fullrank"]  # nb.fit's ``family``


REGRESSION_FAMILIES = ("poisson", "negative_binomial", "student_t", "gaussian")
_FIT_OPTIONS = tuple(inspect.signature(fit).parameters)[3:]  # after model, x, y


def fit_options_of(estimator: str, options: Any) -> dict[str, Any]:
    """A copy of ``fit_options`` (``None`` or a dict of further ``nb.fit`` arguments)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"fit_options must be a dict of nb.fit arguments or None, got {options!r}")
    unknown = sorted(set(options) - set(_FIT_OPTIONS))
    if unknown:
        raise TypeError(
            f"fit_options must hold arguments of nb.fit, got unknown {', '.join(map(repr, unknown))}"
            f" (nb.fit takes {', '.join(_FIT_OPTIONS)})"
        )
    taken = sorted({"family", "seed", "progress"} & options.keys())
    if taken:
        raise ValueError(
            f"fit_options must not hold {', '.join(map(repr, taken))}: they are arguments "
            f"of {estimator}, got {options!r}"
        )
    return dict(options)


class GeneralizedLinearEstimator(RegressionEstimator):
    """The fit of a ``GLMModel``: by ``nb.fit`` (``method="vi"``) or in closed form
    (``"exact"``); sets ``posterior_``, ``coef_`` and ``intercept_``.

    Data-parallel under ``torch.distributed`` (``engine.distributed``): arrays passed to
    ``fit`` are this process's rows (``N`` is their sum over processes), a data source is
    passed whole and each process reads its shard. Whatever looks at all rows is all-reduced
    (the standardisation's moments, the Gram matrix of the identifiability checks and of the
    exact posterior, the classes), so every process takes the same decisions and ends with
    the same fitted attributes; ``nb.fit`` runs data-parallel on the standardised rows."""

    fits_data_parallel = True
    progress: bool | None
    fit_options: dict[str, Any] | None

    def _inputs(self, X: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The standardised design of the rows ``X`` and, with group terms, each term's
        group index and scaled columns (``_group_effects``), built by the fitted formula."""
        groups = cast(GLMModel, self._model).groups if hasattr(self, "posterior_") else ()
        if not groups:
            return super()._inputs(X)
        if not hasattr(X, "columns"):
            raise ValueError(
                f"X must be a DataFrame holding the columns of the formula "
                f"{self.formula_.formula!r} (its group terms read them), got {type(X).__name__}"
            )
        x_std, design = self._standardised(X, from_formula=True)
        return (x_std, *group_inputs(groups, design.groups, x_std.dtype))

    def _fit_glm(
        self,
        spec: GLMSpec,
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        approximation: Approximation,
        method: Literal["vi", "exact"] = "vi",
    ) -> dict[str, torch.Tensor]:
        """Fit ``spec``'s model to checked ``X`` ``(N, d)`` and ``y`` ``(N,)`` (and the rows of
        the formula's group terms, when :meth:`from_design` fits one); returns the posterior
        means by parameter name."""
        options = fit_options_of(type(self).__name__, self.fit_options)
        check_bool("fit_intercept", spec.fit_intercept)
        world = World.current()
        with world.together():  # a process with bad rows stops them all
            check_response(spec.family, y)
        if world.parallel:
            return self._fit_glm_shared(spec, X, y, world, approximation=approximation,
                                        method=method, options=options)
        groups = self._design_groups
        model = glm_model(spec, X, y, groups)
        x_std = model.standardise_x(X)
        residual = _check_identified(spec, model, x_std, y)
        if method == "exact" and (groups or needs_scale_grid(spec)):
            with threads_for(X.numel()):  # many small operations, the summary draws' too
                return self._fitted(scale_grid_posterior(model, X, y, groups))
        if method == "exact":
            posterior = exact_posterior(spec, model, X, y)
        elif not residual and not groups:
            posterior = _without_mode(spec, model, X, y)
        else:
            inputs = (x_std, *group_inputs(model.groups, groups, X.dtype)) if groups else x_std
            twin = fit(
                standardised_twin(model), inputs, model.standardise_y(y),
                family=approximation, seed=self.seed, progress=self.progress, **options,
            )
            posterior = _on_user_scale(twin, model)
        return self._fitted(posterior)

    def _fit_glm_shared(
        self,
        spec: GLMSpec,
        X: torch.Tensor,
        y: torch.Tensor,
        world: World,
        *,
        approximation: Approximation,
        method: Literal["vi", "exact"],
        options: dict[str, Any],
    ) -> dict[str, torch.Tensor]:
        """:meth:`_fit_glm` where ``X`` ``(N_r, d)`` and ``y`` ``(N_r,)`` are this process's
        rows of a data-parallel fit: the standardisation from all-reduced moments, the
        identifiability checks and the exact posterior from the all-reduced ``DesignSums``
        (as from a data source), ``nb.fit`` on this process's standardised rows."""
        _check_same_columns(world, X)
        world.check_own_rows("X and y", X, y)
        scaling = Standardisation.of(X, y, centre=spec.fit_intercept,
                                     continuous=spec.family in CONTINUOUS, world=world)
        dtype = X.dtype
        if method == "exact":  # as from a source: y^T y - m^T mu cancels float32's digits
            dtype = torch.float64
            scaling = scaling._replace(x_mean=scaling.x_mean.double(),
                                       x_scale=scaling.x_scale.double())
        model = glm_model_of(spec, scaling, dtype=dtype)
        x_std, y_std = model.standardise_x(X.to(dtype)), model.standardise_y(y.to(dtype))
        sums = DesignSums.of(design_of(x_std, spec.fit_intercept), y_std).pooled(world)
        where = f"a data-parallel fit ({world.size} processes, each holding its own rows)"
        return self._fitted(_posterior_from_sums(
            spec, model, sums, method, where, "fit in one process",
            lambda twin: fit(twin, x_std, y_std, family=approximation, seed=self.seed,
                             progress=self.progress, **options)))

    def _fitted(self, posterior: GaussianPosterior) -> dict[str, torch.Tensor]:
        """Set ``posterior_``, ``coef_`` and ``intercept_``; the posterior means by name."""
        self.posterior_ = posterior
        mean = posterior.mean
        coef = mean.get("coef", self._model.coef)  # no columns: y ~ 1 + (1 | g)
        self.coef_ = coef.detach().numpy()
        self.intercept_ = float(mean["intercept"]) if self.fit_intercept else 0.0
        return mean

    def _fit_glm_source(
        self,
        spec: GLMSpec,
        source: DataSource,
        y: Any,
        *,
        approximation: Approximation,
        method: Literal["vi", "exact"] = "vi",
    ) -> dict[str, torch.Tensor]:
        """Fit ``spec``'s model to the rows of ``source`` (``_streamed``): one pass for the
        standardisation, the identifiability checks and, for ``method="exact"``, the
        posterior; ``nb.fit`` on the standardised rows for ``"vi"``. For the bernoulli family
        the response's two values are ``classes_``, the larger one the model's ``y = 1``."""
        options = fit_options_of(type(self).__name__, self.fit_options)
        check_bool("fit_intercept", spec.fit_intercept)
        source = source_argument(source, y)
        formula = getattr(source, "spec", None)
        if isinstance(formula, FormulaSpec) and spec.fit_intercept != formula.intercept:
            raise ValueError(
                f"fit_intercept must be {formula.intercept} for a source of the formula "
                f"{formula.formula!r} (its intercept), got {spec.fit_intercept}")
        labels = spec.family == "bernoulli"
        world = World.current()
        with world.together():  # each process reads its own rows; one that fails stops all
            read = read_source(source.shard(world.rank, world.size) if world.parallel
                               else source, spec.family)
        read = read.pooled(world)
        positive = None
        if labels:
            if read.values.numel() != 2:
                shown = read.values.tolist() + (["..."] if read.values.numel() > 2 else [])
                raise ValueError(f"y must hold 2 classes, got {shown}")
            self.classes_ = _labels_in_column_type(read.values, source)
            positive = float(read.values[1])
        scaling = read.standardisation(spec.fit_intercept, spec.family in CONTINUOUS)
        dtype = read.dtype
        if method == "exact":  # in float64 whatever the source's dtype: the noise term
            dtype = torch.float64  # y^T y - m^T mu cancels most of float32's digits
            scaling = scaling._replace(x_mean=scaling.x_mean.double(),
                                       x_scale=scaling.x_scale.double())
        model = glm_model_of(spec, scaling, dtype=dtype)
        sums = read.design_sums(scaling, spec.fit_intercept)
        posterior = _posterior_from_sums(
            spec, model, sums, method, "a data source", "fit from arrays in memory",
            lambda twin: fit(twin, StandardisedSource(source, model, positive),
                             family=approximation, seed=self.seed, progress=self.progress,
                             **options))
        self.n_features_in_ = int(scaling.x_mean.shape[0])
        if hasattr(self, "feature_names_in_"):  # a previous fit's
            delattr(self, "feature_names_in_")
        names = feature_names(source)
        if names is not None:
            self.feature_names_in_ = names
        if isinstance(formula, FormulaSpec):
            self.formula_ = formula  # builds the design of raw rows for predict
        return self._fitted(posterior)


def _labels_in_column_type(values: torch.Tensor, source: DataSource) -> np.ndarray:
    """The response's distinct ``values`` (read as floats) in its file column's own type when
    that is integer or boolean, as the same column in memory gives them; floats otherwise."""
    schema, column = getattr(source, "schema", None), getattr(source, "y", None)
    if isinstance(column, str):
        column = unquoted(column) or column  # a formula's Q("name") response
    if schema is None or not isinstance(column, str) or column not in schema.names:
        return values.numpy()
    dtype = np.dtype(schema.field(column).type.to_pandas_dtype())
    kept = np.issubdtype(dtype, np.integer) or dtype == np.bool_
    return values.numpy().astype(dtype) if kept else values.numpy()


def needs_scale_grid(spec: GLMSpec) -> bool:
    """Whether the exact posterior of ``spec`` (gaussian, identity link) integrates its noise
    scale on a grid: learned, with a proper prior on it or on the coefficients (flat priors
    have the Normal-Inverse-Gamma closed form)."""
    return spec.noise_scale is None and (
        spec.prior_scale is not None or spec.dispersion_prior is not None)


def _posterior_from_sums(
    spec: GLMSpec, model: GLMModel, sums: DesignSums, method: Literal["vi", "exact"],
    setting: str, instead: str, fit_twin: Callable[[GLMModel], GaussianPosterior],
) -> GaussianPosterior:
    """The posterior of ``model`` from the ``DesignSums`` of all rows (read from a data
    source, or all-reduced over processes; ``setting`` in words, and what to do ``instead``
    where it cannot serve): the identifiability checks from them, then the exact posterior
    or ``fit_twin(standardised_twin(model))`` (``nb.fit`` on the standardised rows)."""
    residual = check_identified_from_sums(spec, model, sums, setting, instead)
    if method == "exact" and needs_scale_grid(spec):
        return scale_grid_from_sums(model, sums)
    if method == "exact":
        return exact_posterior_from_sums(spec, model, sums.to(model.x_scale.dtype))
    if not residual:
        raise ValueError(
            f"X must have more rows than columns for a learned noise scale with {setting}, got "
            f"{sums.n_data} rows that X fits exactly: {instead} (solved exactly there) or "
            "give a known noise_scale")
    return _on_user_scale(fit_twin(standardised_twin(model)), model)


def _check_same_columns(world: World, X: torch.Tensor) -> None:
    """Refuse, on every process, arrays ``X`` of different widths or dtypes on different
    processes of a data-parallel fit (their sums could not be added)."""
    for what, value in (("columns", X.shape[1]), ("bytes per value", X.element_size())):
        low, high = world.smallest(value), world.largest(value)
        if low != high:
            raise ValueError(
                f"X must have the same columns and dtype on every process of a data-parallel "
                f"fit, got between {low} and {high} {what} on the {world.size} processes")


def _on_user_scale(twin: GaussianPosterior, model: GLMModel) -> GaussianPosterior:
    """The posterior of ``model`` from that of its ``standardised_twin``: the family and the
    importance draws read through ``u = A u_std + b`` (``user_map``), the Laplace curvature
    ``A^-T H A^-1``."""
    A, b = user_map(model)
    family = AffineFamily(twin.family, A, b)
    info = twin.info
    if info.laplace_precision is not None:
        inverse = torch.linalg.inv(A.double())
        precision = inverse.T @ info.laplace_precision.double() @ inverse
        info = replace(info, laplace_precision=precision.to(info.laplace_precision.dtype))
    importance = None if twin.importance is None else twin.importance.mapped(A, b)
    return GaussianPosterior(model, ParamLayout(model), family, info, twin.data, importance)


def _check_identified(spec: GLMSpec, model: GLMModel, x_std: torch.Tensor,
                      y: torch.Tensor) -> bool:
    """Raise where the priors leave the posterior improper (``_identifiability``), judged on
    the standardised inputs; returns whether a learned noise scale has a residual to learn
    from (``True`` without one)."""
    rank = design_rank(x_std, spec.fit_intercept)
    check_coefficients(spec.prior_scale, rank, x_std.shape[1] + int(spec.fit_intercept), len(y))
    if spec.family == "bernoulli":
        check_separation(spec.prior_scale, x_std, y, spec.fit_intercept)
    if spec.family in ("poisson", "negative_binomial"):
        check_zeros(spec.prior_scale, x_std, y, spec.fit_intercept)
    if spec.family not in CONTINUOUS or spec.noise_scale is not None:
        return True
    noise_prior = model.param_specs["sigma"].prior
    exact = rank >= len(y) or (
        spec.link == "identity" and fits_exactly(x_std, model.standardise_y(y), spec.fit_intercept)
    )
    return check_noise(spec.dispersion_argument, noise_prior, rank, len(y), exact)


def _without_mode(spec: GLMSpec, model: GLMModel, X: torch.Tensor, y: torch.Tensor):
    """The posterior where ``y`` is fitted exactly: its density has no mode for ``nb.fit`` to
    start from, so the gaussian identity-link model is solved exactly; others are refused."""
    why = (
        f"X fits y exactly (a design of rank >= its {len(y)} rows), so the joint density "
        "of the coefficients and the noise scale grows without bound as sigma -> 0 and "
        "has no mode"
    )
    if spec.family == "gaussian" and spec.link == "identity" and spec.prior_scale is not None:
        return scale_grid_posterior(model, X, y,
                                    reason=f"{why}: exact (sigma integrated on a grid)")
    raise ValueError(
        f"X must have fewer columns than rows for family={spec.family!r} with "
        f"link={spec.link!r} and a learned noise scale: {why}, so VI cannot start from it. "
        "Give a known noise_scale, fewer columns, or use the gaussian family with the "
        "identity link and a proper prior_scale (solved exactly then)"
    )


class BayesianGLM(RegressorMixin, GeneralizedLinearEstimator):
    """A Bayesian generalised linear regression, a scikit-learn regressor.

    Args:
        family: the likelihood: ``"poisson"``, ``"negative_binomial"``, ``"student_t"`` or
            ``"gaussian"`` (binary labels: ``nb.BayesianGLMClassifier``).
        link: ``None`` for the family's default (``log``, ``log``, ``identity``,
            ``identity``); also ``"log"`` for gaussian.
        fit_intercept: include an intercept (flat prior).
        prior_scale: sd of the Normal(0, ·) prior on each coefficient on the user's scale;
            ``"auto"`` as in ``_glm_model``'s docstring, ``None`` flat.
        dispersion_prior: the prior on ``sigma`` (gaussian, student_t) or ``concentration``
            (negative_binomial), a torch Distribution on ``(0, inf)``; ``"auto"``
            (``Exponential(1 / sd(y))``, ``Exponential(1)``), ``None`` flat.
        df_prior: the prior on student_t's ``df`` (on ``df > 2``); ``"auto"`` is Gamma(2, 0.1).
        group_prior: the prior of the sd of each group term's effects (formulas with
            ``(x | g)`` terms), a torch Distribution on ``(0, inf)`` on the linear predictor's
            scale; ``"auto"`` is ``HalfNormal(2.5 s / sd(z_j))`` with ``s`` as for
            ``prior_scale``'s ``"auto"``.
        approximation: the variational family, ``nb.fit``'s ``family`` argument (named
            apart from the likelihood's ``family``).
        seed, progress: passed to ``nb.fit``; ``fit_options``: a dict of its other
            arguments (``{"max_steps": 300}``).

    Fitted attributes: ``coef_`` (numpy), ``intercept_`` (float; posterior means,
    PSIS-corrected where the fit allowed it, on the link scale), ``dispersion_`` (posterior
    mean of ``sigma`` or ``concentration``; ``None`` for poisson), ``link_``, ``posterior_``
    (an ``nb.Posterior``). ``predict`` gives the predictive mean on the response scale,
    ``score`` the R^2 of it.

    ``fit(nb.data.Parquet(path, x=[...], y="y"))`` fits from a data source, as
    ``BayesianLinearRegression`` does; a flat coefficient prior (``prior_scale=None``) for
    counts is refused there (its identifiability check needs all rows at once), and in a
    data-parallel fit under ``torch.distributed`` (``GeneralizedLinearEstimator``).
    """

    def __init__(
        self,
        family: Literal["poisson", "negative_binomial", "student_t", "gaussian"] = "gaussian",
        link: LinkName | None = None,
        *,
        fit_intercept: bool = True,
        prior_scale: float | Literal["auto"] | None = "auto",
        dispersion_prior: Distribution | Literal["auto"] | None = "auto",
        df_prior: Distribution | Literal["auto"] = "auto",
        group_prior: Distribution | Literal["auto"] = "auto",
        approximation: Approximation = "auto",
        seed: int | None = 0,
        progress: bool | None = None,
        fit_options: dict[str, Any] | None = None,
    ) -> None:
        self.family = family
        self.link = link
        self.fit_intercept = fit_intercept
        self.prior_scale = prior_scale
        self.dispersion_prior = dispersion_prior
        self.df_prior = df_prior
        self.group_prior = group_prior
        self.approximation = approximation
        self.seed = seed
        self.progress = progress
        self.fit_options = fit_options

    def _check_family_and_link(self) -> str:
        if self.family == "bernoulli":
            raise ValueError(
                "family must be one of " + ", ".join(map(repr, REGRESSION_FAMILIES))
                + ", got 'bernoulli': binary labels are classified by nb.BayesianGLMClassifier"
            )
        check_choice("family", self.family, REGRESSION_FAMILIES)
        return check_link(self.family, self.link)

    @unfitted_on_error
    def fit(self, X: Any, y: Any = None) -> BayesianGLM:
        """Infer the posterior of ``(intercept, coef, dispersion)`` from ``X`` ``(N, d)``,
        ``y`` ``(N,)``, or from a data source ``X`` (``nb.data.Parquet(path, x=[...],
        y="y")``) with ``y=None``, read in passes (``_streamed``)."""
        link = self._check_family_and_link()
        spec = GLMSpec(
            self.family, link, self.fit_intercept, self.prior_scale, self.dispersion_prior,
            self.df_prior, group_prior=self.group_prior,
        )
        if isinstance(X, DataSource):
            mean = self._fit_glm_source(spec, X, y, approximation=self.approximation)
        else:
            X_t, y_t = self._checked_tensors(X, y)
            mean = self._fit_glm(spec, X_t, y_t, approximation=self.approximation)
        self.link_ = link
        name = "concentration" if self.family == "negative_binomial" else "sigma"
        self.dispersion_ = float(mean[name]) if name in mean else None
        return self


def check_link(family: str, link: str | None) -> str:
    """``link``, or the family's default for ``None``, if the family has it."""
    choices = LINKS[family]
    if link is None:
        return choices[0]
    if link not in choices:
        raise ValueError(
            f"link must be one of {', '.join(map(repr, choices))} for "
            f"family={family!r}, got {link!r}"
        )
    return link
