"""What the regression estimators share: input checks, standardisation, the linear predictor,
predictions on the user's scale, the summary table and formulas.

One standardisation rule (``Standardisation.of``): the models see standardised inputs
``x_std = (X - x_mean) / x_scale`` and keep their coefficients on the user's scale, so the
linear predictor is

    eta = intercept + x_mean . coef + x_std . (x_scale * coef)  (= intercept + X coef)

and priors stay on the user's scale. ``nb.fit`` itself works on the model's standardised
twin (``_glm_model.standardised_twin``), whose parameters are well scaled too.
A continuous response is modelled standardised, ``y_std = (y - y_mean) / y_scale``; the
estimator maps its predictions back with ``Prediction.affine(y_mean, y_scale)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeVar, cast

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Distribution, Normal

from noisybayes._checks import (
    as_float_tensor,
    check_choice,
    check_numeric_columns,
    check_positive,
)
from noisybayes.engine.distributed import World
from noisybayes.infer.posterior import GaussianPosterior
from noisybayes.infer.prediction import Prediction
from noisybayes.model.model import Model
from noisybayes.model.param import param

if TYPE_CHECKING:
    from arviz import InferenceData

    from noisybayes.infer.calibration import PredictiveDraws
    from noisybayes.tables.formula import Response

__all__ = [
    "FLOAT_DTYPES",
    "LinearPredictor",
    "RegressionEstimator",
    "Standardisation",
    "array_input",
    "coef_prior",
    "location_and_scale",
    "one_where_zero",
    "resolve_prior",
    "tensor_of",
    "unfitted_on_error",
]

_Estimator = TypeVar("_Estimator", bound="RegressionEstimator")
_STANDARDISE_CHUNK = 1 << 20  # entries per float64 chunk of the standardisation's passes


def location_and_scale(
    values: torch.Tensor, centre: bool, world: World | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means (zeros unless ``centre``) and population sds of ``values`` ``(N, d)``
    (``d`` may be 0); a zero or undefined sd (one row, a constant column) becomes 1. Over a
    ``world`` of several processes ``values`` are this process's rows and the moments are
    every row's: ``mean = sum_r sum_i x_i / N``, ``sd^2 = sum_r sum_i (x_i - mean)^2 / N``,
    each sum all-reduced, the same on every process. Summed in float64 over row chunks, in
    two passes (no cancellation however far the columns sit from 0, no float64 copy of all
    rows), returned in ``values``' dtype."""
    world = world or World()
    chunks = values.split(max(1, _STANDARDISE_CHUNK // max(1, values.shape[1])))
    n_data = world.total(values.shape[0])
    zeros = torch.zeros(values.shape[1], dtype=torch.float64)
    (total,) = world.sum(sum((c.double().sum(0) for c in chunks), zeros))
    mean = total / n_data
    (squares,) = world.sum(sum(((c.double() - mean).square().sum(0) for c in chunks), zeros))
    sd = (squares / n_data).sqrt() if n_data > 1 else torch.ones_like(mean)
    mean, sd = mean.to(values.dtype), sd.to(values.dtype)
    return (mean if centre else torch.zeros_like(mean)), one_where_zero(sd, mean)


def one_where_zero(sd: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``sd`` with the sds of constant columns replaced by 1 (such a column is left
    unscaled): zero, or within rounding of zero, ``sd <= 16 eps |mean|`` (a constant 0.1
    over 1,000 rows has an sd of 3e-17 in float64 from the rounding of its mean)."""
    rounding = 16 * torch.finfo(sd.dtype).eps * mean.abs()
    return torch.where(sd > rounding, sd, torch.ones_like(sd))


class Standardisation(NamedTuple):
    """``x_std = (X - x_mean) / x_scale`` (``x_mean``, ``x_scale`` shaped ``(d,)``) and
    ``y_std = (y - y_mean) / y_scale``."""

    x_mean: torch.Tensor
    x_scale: torch.Tensor
    y_mean: float
    y_scale: float

    @classmethod
    def of(
        cls, X: torch.Tensor, y: torch.Tensor, *, centre: bool, continuous: bool,
        world: World | None = None,
    ) -> Standardisation:
        """``location_and_scale`` of the columns of ``X`` ``(N, d)`` and, for a
        ``continuous`` response, of ``y`` ``(N,)``; other responses stay as they are
        (``y_mean = 0``, ``y_scale = 1``). Means are taken only when ``centre``. In a
        data-parallel ``world`` the rows are this process's share and the moments those of
        every process's rows (one all-reduce for both)."""
        world = world or World()
        if world.parallel:
            rows = torch.cat([X, y[:, None]], 1) if continuous else X
            mean, scale = location_and_scale(rows, centre, world)
            if not continuous:
                return cls(mean, scale, 0.0, 1.0)
            return cls(mean[:-1], scale[:-1], float(mean[-1]), float(scale[-1]))
        x_mean, x_scale = location_and_scale(X, centre)
        if not continuous:
            return cls(x_mean, x_scale, 0.0, 1.0)
        y_mean, y_scale = location_and_scale(y[:, None], centre)
        return cls(x_mean, x_scale, float(y_mean[0]), float(y_scale[0]))

    @classmethod
    def of_moments(
        cls, mean: torch.Tensor, sd: torch.Tensor, *, centre: bool, continuous: bool
    ) -> Standardisation:
        """:meth:`of` from the column means and population sds ``(d + 1,)`` of ``[X, y]``
        (read in a pass over a data source), in their dtype."""
        mean, scale = mean if centre else torch.zeros_like(mean), one_where_zero(sd, mean)
        if not continuous:
            return cls(mean[:-1], scale[:-1], 0.0, 1.0)
        return cls(mean[:-1], scale[:-1], float(mean[-1]), float(scale[-1]))


def coef_prior(
    prior_scale: float | str | None, x_sd: torch.Tensor, response_sd: float
) -> Distribution | None:
    """``coef_j ~ Normal(0, s_j)``: ``s_j = 2.5 response_sd / sd(x_j)`` for ``"auto"`` (Gelman
    et al. 2008, on inputs scaled to unit sd), ``prior_scale`` itself for a number, flat
    for ``None``."""
    if prior_scale is None:
        return None
    if prior_scale == "auto":
        scale = 2.5 * response_sd / x_sd
    else:
        scale = torch.full_like(x_sd, check_positive("prior_scale", prior_scale))  # type: ignore[arg-type]
    return Normal(torch.zeros_like(scale), scale)


def resolve_prior(name: str, value: Any, auto: Distribution) -> Distribution | None:
    """The prior that argument ``name`` asks for: a torch Distribution of one scalar as given,
    ``None`` (flat), or ``auto`` for ``"auto"``."""
    if value is None:
        return value
    if isinstance(value, Distribution):
        shape = tuple(value.batch_shape + value.event_shape)
        if shape:
            raise ValueError(
                f"{name} must be a distribution of one scalar (batch and event shape ()), got "
                f"shape {shape}: {value!r}. Give one number's prior, e.g. Exponential(1.0)"
            )
        return value
    if isinstance(value, str):
        check_choice(name, value, ("auto",))
        return auto
    raise TypeError(f"{name} must be a torch Distribution, 'auto' or None, got {value!r}")


class LinearPredictor(Model):
    """An ``nb.Model`` holding ``intercept`` (flat prior, when fitted) and ``coef`` on the
    user's scale, fed standardised inputs; ``linear_predictor`` gives ``intercept + X coef``.
    It keeps the ``Standardisation`` of its data (``x_mean``, ``x_scale`` as buffers).
    Without columns (``n_features = 0``, a formula's ``y ~ 1 + (1 | g)``) ``coef`` is an
    empty tensor, not a parameter."""

    x_mean: torch.Tensor
    x_scale: torch.Tensor

    def __init__(
        self,
        n_features: int,
        scaling: Standardisation,
        coef_prior: Distribution | None,
        fit_intercept: bool,
    ) -> None:
        super().__init__()
        self.register_buffer("x_mean", scaling.x_mean)
        self.register_buffer("x_scale", scaling.x_scale)
        self.y_mean, self.y_scale = scaling.y_mean, scaling.y_scale
        self.fit_intercept = fit_intercept
        if fit_intercept:
            self.intercept = param(None)
        if n_features:
            self.coef = param(coef_prior, shape=(n_features,))
        else:
            self.register_buffer("coef", scaling.x_scale.new_zeros(0), persistent=False)

    def linear_predictor(self, x_std: torch.Tensor) -> torch.Tensor:
        """``eta = intercept + x_mean . coef + x_std . (x_scale * coef)``, shape ``(N,)``."""
        coef = self.coef
        eta = self.x_mean @ coef + x_std @ (self.x_scale * coef)
        return eta + self.intercept if self.fit_intercept else eta

    def standardise_x(self, X: torch.Tensor) -> torch.Tensor:
        """``(X - x_mean) / x_scale`` for ``X`` ``(N, d)``."""
        return (X - self.x_mean) / self.x_scale

    def standardise_y(self, y: torch.Tensor) -> torch.Tensor:
        """``(y - y_mean) / y_scale`` for ``y`` ``(N,)``."""
        return (y - self.y_mean) / self.y_scale


def array_input(name: str, value: Any) -> Any:
    """``value`` ready for scikit-learn's validation: a tensor becomes its numpy array (so
    float32 stays float32), a DataFrame must have numeric columns only; one of no columns
    (a formula's ``y ~ 1``) becomes an empty float array of its rows, ``(N, 0)``."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, pd.DataFrame):
        if value.shape[1] == 0:  # scikit-learn finds no dtype in a frame without columns
            return np.empty((len(value), 0))
        check_numeric_columns(name, value)
    return value


def tensor_of(array: np.ndarray) -> torch.Tensor:
    """A tensor of a checked array, sharing its memory unless it is read-only."""
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


_Fit = TypeVar("_Fit", bound=Callable[..., Any])


def unfitted_on_error(fit: _Fit) -> _Fit:
    """Wrap an estimator's ``fit`` so that any exception in it, ``KeyboardInterrupt``
    included, removes the fitted attributes (names ending in ``_``) before it propagates:
    an interrupted or failed fit leaves the estimator unfitted (``predict`` raises
    ``NotFittedError``), never holding a partial model or the previous fit's (a fit drops
    the previous fit's ``formula_`` and ``design_`` before it starts). Under
    ``torch.distributed`` it refuses, on every process, an estimator whose class does not set
    ``fits_data_parallel`` (each process would fit its own rows alone)."""

    @functools.wraps(fit)
    def wrapped(self: BaseEstimator, *args: Any, **kwargs: Any) -> Any:
        world = World.current()
        if world.parallel and not getattr(self, "fits_data_parallel", False):
            raise NotImplementedError(
                f"{type(self).__name__}.fit runs on one process, and torch.distributed is "
                f"initialised with {world.size} processes (each would fit its own rows "
                "alone): fit on all rows in one process, or use nb.fit or nb.nn.train, which "
                "fit data-parallel")
        for name in ("formula_", "design_"):  # a previous fit's formula reads no new rows
            if hasattr(self, name):
                delattr(self, name)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
                delattr(self, name)
            raise

    return cast(_Fit, wrapped)


FLOAT_DTYPES = (np.float64, np.float32)  # float32 input stays float32, others become float64


class RegressionEstimator(BaseEstimator):
    """The scikit-learn estimator contract shared by the generalised linear models:
    subclasses set ``posterior_`` (over a ``LinearPredictor``, which keeps the
    standardisation); inputs are checked by scikit-learn's ``validate_data``, which records
    ``n_features_in_`` and, for a DataFrame with string column names, ``feature_names_in_``.

    Under ``torch.distributed`` a subclass that sets ``fits_data_parallel`` fits the rows of
    every process together (``glm``); formulas are refused there (:meth:`from_design`)."""

    fits_data_parallel: ClassVar[bool] = False
    # how from_formula reads the response: a numeric expression, or (a classifier's) labels
    formula_response: ClassVar[Response] = "numeric"
    fit_intercept: bool
    seed: int | None
    posterior_: GaussianPosterior
    n_features_in_: int
    formula_: Any
    design_: Any
    _fitting_design: Any = None  # the formula's Design while from_design fits it

    @property
    def _design_groups(self) -> tuple[Any, ...]:
        """The rows of the group terms of the formula being fitted (none outside one)."""
        return () if self._fitting_design is None else self._fitting_design.groups

    # --- input checks -----------------------------------------------------------------
    def _validate_xy(self, X: Any, y: Any, *, y_numeric: bool = True) -> tuple[np.ndarray, Any]:
        """``X`` ``(N, d)`` as a float array and ``y`` ``(N,)``, checked by scikit-learn;
        records the feature names and count. At least 2 rows: one row leaves a flat
        intercept and a learned noise scale without a proper posterior. At least one column,
        except in a formula's design (``y ~ 1 + (1 | g)`` has none besides its intercept)."""
        return validate_data(
            self, array_input("X", X), array_input("y", y), dtype=FLOAT_DTYPES,
            y_numeric=y_numeric, ensure_min_samples=2,
            ensure_min_features=int(self._fitting_design is None),
        )

    def _checked_tensors(self, X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``X`` and a numeric ``y`` checked (:meth:`_validate_xy`) and as tensors; under
        ``torch.distributed`` a process whose rows fail the checks stops every process."""
        with World.current().together():
            return self._as_tensors(*self._validate_xy(X, y))

    @staticmethod
    def _as_tensors(X: np.ndarray, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``X`` and a numeric ``y`` as tensors of one float dtype."""
        X_t = tensor_of(X)
        y_t = as_float_tensor("y", y, ndim=(1,), dtype=None)
        dtype = torch.promote_types(X_t.dtype, y_t.dtype)
        return X_t.to(dtype), y_t.to(dtype)

    def _inputs(self, X: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """What the model's ``forward`` takes for the rows ``X``: the standardised design."""
        return self._standardised(X)[0]

    def _standardised(self, X: Any, *, from_formula: bool = False) -> tuple[torch.Tensor, Any]:
        """The standardised design of the rows ``X`` and, where it was built from raw rows by
        the fitted formula (always when ``from_formula``), that ``Design``."""
        check_is_fitted(self, "posterior_")
        formula = getattr(self, "formula_", None)
        names = getattr(self, "feature_names_in_", None)
        design = None
        if (
            formula is not None
            and hasattr(X, "columns")
            and (from_formula or names is None or list(X.columns) != list(names))
        ):
            # raw rows: their design as the formula says, one row of it per row of X
            design = formula.transform(X, missing="error")
            X = design.X
        X_a = validate_data(self, array_input("X", X), reset=False, dtype=FLOAT_DTYPES,
                            ensure_min_features=min(1, self.n_features_in_))
        X_t = tensor_of(X_a).to(self.posterior_.dtype)
        return self._model.standardise_x(X_t), design

    def _standardised_y(self, y: Any, dtype: torch.dtype) -> torch.Tensor:
        return self._model.standardise_y(as_float_tensor("y", y, ndim=(1,), dtype=dtype))

    @property
    def _model(self) -> LinearPredictor:
        return cast(LinearPredictor, self.posterior_.model)

    def _response_shift_scale(self) -> tuple[float, float]:
        """``(y_mean, y_scale)``: the model's response is ``(y - y_mean) / y_scale``."""
        return self._model.y_mean, self._model.y_scale

    # --- predictions --------------------------------------------------------------------
    def predict(self, X: Any, return_std: bool = False):
        """Posterior predictive mean ``(N,)`` on the response's scale, a numpy array; with
        ``return_std`` also the total predictive sd (parameter uncertainty and noise), as in
        scikit-learn's ``BayesianRidge``."""
        pred = self.predict_distribution(X)
        mean = pred.mean.detach().numpy()
        return (mean, pred.sd.detach().numpy()) if return_std else mean

    def predict_distribution(
        self, X: Any, level: float = 0.94, n_samples: int = 2000
    ) -> Prediction:
        """The full ``nb.Prediction`` (mean, sds, intervals) on the user's scale of ``y``:
        the model's, mapped back by ``Prediction.affine(y_mean, y_scale)`` when the response
        was standardised (a count or label response is modelled as it is)."""
        inputs = self._inputs(X)
        pred = self.posterior_.predict(inputs, n_samples=n_samples, level=level, seed=self.seed)
        shift, scale = self._response_shift_scale()
        return pred if (shift, scale) == (0.0, 1.0) else pred.affine(shift, scale)

    def predictive_draws(
        self, X: Any, y: Any = None, *, n_samples: int = 1000, seed: int | None = None
    ) -> PredictiveDraws:
        """``n_samples`` posterior predictive draws at ``X`` on the user's scale of ``y``, and,
        when held-out ``y`` is given, its log-density under each draw (for ``nb.calibration``)."""
        from noisybayes.infer.calibration import predictive_draws

        inputs = self._inputs(X)
        y_std = None if y is None else self._standardised_y(y, self.posterior_.dtype)
        seed = self.seed if seed is None else seed
        draws = predictive_draws(self.posterior_, inputs, y_std, n_samples=n_samples, seed=seed)
        return draws.rescaled(*self._response_shift_scale())

    def to_arviz(
        self,
        X: Any = None,
        y: Any = None,
        *,
        n_chains: int = 1,
        n_draws: int = 1000,
        seed: int | None = None,
    ) -> InferenceData:
        """An ArviZ ``InferenceData`` on the user's scale: the posterior of ``intercept``,
        ``coef`` (and the noise), and the observed ``y``, its posterior predictive draws and
        pointwise log-likelihood in ``y``'s units, at the fit's data or at ``X`` and ``y``
        (so ``az.loo`` compares with models fitted to the unstandardised response).

        ``coef``'s dimension is ``feature``, with the column names as coordinates
        (``x0, x1, ...`` without names). The draws are independent, in one chain by default,
        so ArviZ's chain diagnostics (r_hat) are not shown as if they meant something."""
        check_is_fitted(self, "posterior_")
        if X is None and y is None and self.posterior_.data is None:
            raise ValueError("to_arviz() needs X and y here: fitted from a data source, the "
                             "posterior keeps no rows")
        if X is None and y is None:
            inputs = y_std = None
        elif X is None or y is None:
            missing = "X" if X is None else "y"
            raise ValueError(f"to_arviz() needs both X and y, got {missing}=None")
        else:
            inputs = self._inputs(X)
            y_std = self._standardised_y(y, self.posterior_.dtype)
        seed = self.seed if seed is None else seed
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(self.n_features_in_)]
        dims: dict[str, list[str]] = {"coef": ["feature"]}
        coords = {"feature": [str(n) for n in names]}
        for g in getattr(self._model, "groups", ()):
            columns = f"{g.name}_column"
            dims |= {g.effect: [g.group, columns], g.sd: [columns]}
            coords |= {g.group: list(g.labels), columns: list(g.columns)}
        return self.posterior_.to_arviz(
            inputs, y_std, n_chains=n_chains, n_draws=n_draws, seed=seed,
            response=self._response_shift_scale(), dims=dims, coords=coords,
        )

    def summary(self, hdi_prob: float = 0.94, *, corrected: bool = True):
        """The posterior table, with coefficient rows named after the features when known,
        and group terms' rows as bambi names them: ``1|g[a]`` the effect of group ``a``
        (``1|g[<new>]`` a new group's), ``1|g_sigma`` the sd of the effects. PSIS-corrected
        where the fit allowed it, ``q``'s own with ``corrected=False`` (the index's name
        says which; ``GaussianPosterior.summary``)."""
        check_is_fitted(self, "posterior_")
        table = self.posterior_.summary(hdi_prob, corrected=corrected)
        return table.rename(index=self.parameter_labels())

    def parameter_labels(self) -> dict[str, str]:
        """The posterior's labels of scalar parameters (``coef[0]``, ``g_effect[2,0]``) to
        the names :meth:`summary` gives them (the feature's, ``1|g[label]``)."""
        check_is_fitted(self, "posterior_")
        features = getattr(self, "feature_names_in_", None)
        names = {}
        if features is not None:
            names = {f"coef[{i}]": str(n) for i, n in enumerate(features)}
        for g in getattr(self._model, "groups", ()):
            for j, column in enumerate(g.columns):
                names[f"{g.sd}[{j}]"] = f"{column}|{g.name}_sigma"
                names |= {f"{g.effect}[{i},{j}]": f"{column}|{g.name}[{label}]"
                          for i, label in enumerate(g.labels)}
        return names

    # --- formulas (front end: formulaic) ------------------------------------------------
    def fit(self: _Estimator, X: Any, y: Any) -> _Estimator:
        raise NotImplementedError

    @classmethod
    def from_formula(
        cls: type[_Estimator],
        formula: str,
        data: Any,
        *,
        missing: Literal["drop", "error"] = "drop",
        **params: Any,
    ) -> _Estimator:
        """Fit ``formula`` (``"y ~ x1 + C(g) + np.log(x2) + (1 | h)"``) on the DataFrame ``data``.

        The design is built by formulaic (``noisybayes.tables.formula``): rows missing a
        used value are dropped (``missing="drop"``, counted in ``design_.n_dropped``) or
        refused (``"error"``); the formula's intercept sets ``fit_intercept``; ``summary()``
        names coefficients after the design columns. ``predict(new)`` and the other
        predictions take raw rows, one prediction per row (a row missing a used value is
        refused), and ``formula_.transform(new).X`` is their design. ``params`` go to the
        constructor. The intercept
        may be the whole fixed part (``"y ~ 1 + (1 | g)"``, ``"y ~ 1"``): ``coef_`` is then
        empty and ``intercept_`` a parameter as ever.
        """
        from noisybayes.tables.formula import design_matrices

        _refuse_formula_in_parallel(cls.__name__)
        design = design_matrices(formula, data, missing=missing, response=cls.formula_response)
        return cls.from_design(design, **params)

    @classmethod
    def from_design(cls: type[_Estimator], design: Any, **params: Any) -> _Estimator:
        """Fit a design already built by ``noisybayes.tables.formula.design_matrices``
        (what :meth:`from_formula` does after building it)."""
        if "fit_intercept" in params:
            raise TypeError("fit_intercept must not be given with a formula: write '- 1' in it")
        _refuse_formula_in_parallel(cls.__name__)
        estimator = cls(**{"fit_intercept": design.spec.intercept, **params})
        estimator._fitting_design = design  # its group terms' rows, read by the fit
        try:
            estimator.fit(design.X, design.y)
        finally:
            del estimator._fitting_design
        estimator.formula_, estimator.design_ = design.spec, design
        return estimator


def _refuse_formula_in_parallel(estimator: str) -> None:
    """Raise, on every process, under ``torch.distributed`` with several processes: a
    formula's design is built from the rows at hand, each process's own there."""
    world = World.current()
    if world.parallel:
        raise NotImplementedError(
            f"{estimator}.from_formula and from_design build the design (its columns, "
            f"categorical levels, group terms) from the rows they are given, and "
            f"torch.distributed is initialised with {world.size} processes, each holding "
            "its own rows (a level missing from one would change its columns): build the "
            "design with the same columns on every process and call fit(X, y), fit a "
            "formula source passed whole on every process (noisybayes.tables."
            "formula_source: its design is learned once, from the files' first rows), "
            "or fit in one process")
