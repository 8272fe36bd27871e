"""Every estimator is a scikit-learn estimator: the library's own checks, and the tools
built on the contract (``clone``, ``Pipeline``, ``cross_val_score``, ``GridSearchCV``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import noisybayes as nb

# Small settings: the checks fit each estimator some hundred times.
SHORT = {"fit_options": {"max_steps": 20}}
ESTIMATORS = [
    nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None),
    nb.BayesianLinearRegression(family="fullrank", **SHORT),
    nb.StudentTLinearRegression(family="fullrank", **SHORT),
    nb.BayesianGLM("gaussian", approximation="fullrank", **SHORT),
    nb.BayesianGLMClassifier(approximation="fullrank", **SHORT),
    nb.BNNRegressor(hidden=(4,), method="layers", likelihood="gaussian", n_epochs=2,
                    n_predict_samples=20),
    nb.BNNClassifier(hidden=(4,), n_epochs=100, n_predict_samples=20),  # 200 steps of 256 rows
    nb.BNNRegressor(hidden=(4,), n_epochs=2, n_predict_samples=20),  # "auto": the layers
    nb.BNNRegressor(hidden=(4,), method="ivon", n_epochs=2, n_predict_samples=20),  # mean-first
    nb.BNNClassifier(hidden=(4,), method="ivon", n_epochs=20, n_predict_samples=20),
]

_PER_ROW_NOISE = (
    "predictions average the network over weight noise drawn per row (local "
    "reparameterization), so a row's Monte Carlo error depends on the rows predicted with it"
)
_EXACT_FIT = (
    "y is exactly X[:, 0] (no noise) with rows to spare: the posterior of a learned noise "
    "scale piles up at 0 (improper), so fit refuses it with a ValueError"
)
# The one list of checks the estimators are known to fail, and why.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "BNNRegressor": {
        "check_methods_subset_invariance": _PER_ROW_NOISE,
        "check_methods_sample_order_invariance": _PER_ROW_NOISE,
    },
    "BNNClassifier": {
        "check_methods_subset_invariance": _PER_ROW_NOISE,
        "check_methods_sample_order_invariance": _PER_ROW_NOISE,
    },
    "StudentTLinearRegression": {"check_regressors_no_decision_function": _EXACT_FIT},
    "BayesianLinearRegression": {"check_regressors_no_decision_function": _EXACT_FIT},
    "BayesianGLM": {"check_regressors_no_decision_function": _EXACT_FIT},
}


_ROUNDING = (
    "IVON draws whole weight tensors, shared by the rows, so only rounding moves a row: "
    "batched float32 products in another row order differ in the last bit (1e-7)"
)
# IVON's draws do not depend on the other rows: of the per-row checks only the order one
# fails, by rounding, and only for the classifier (the regressor's outputs happen to agree).
IVON_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "BNNClassifier": {"check_methods_sample_order_invariance": _ROUNDING},
}


def expected_failed_checks(estimator) -> dict[str, str]:
    method = getattr(estimator, "method", None)
    if method == "auto" and hasattr(estimator, "_auto_method"):  # what a network's default
        # fits with these settings
        method = estimator._auto_method(estimator.n_components)
    if method == "ivon":
        return IVON_FAILED_CHECKS.get(type(estimator).__name__, {})
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_scikit_learn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # k-hat warnings of the short fits
        check(estimator)


def _regression(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1]
    return X, X @ np.array([1.0, 0.1, 5.0]) + 0.3 * rng.normal(size=n)


def _labels(X: np.ndarray) -> np.ndarray:
    return np.where(X[:, 0] + 10 * X[:, 2] > 0, "yes", "no")


ONE_OF_EACH = [
    nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None),
    nb.BayesianGLM("poisson", approximation="fullrank", fit_options={"max_steps": 100}),
    nb.BayesianGLMClassifier(approximation="fullrank", fit_options={"max_steps": 100}),
    nb.BNNRegressor(hidden=8, n_epochs=20, n_predict_samples=20),
    nb.BNNClassifier(hidden=8, n_epochs=20, n_predict_samples=20),
]


def _data_for(estimator) -> tuple[np.ndarray, np.ndarray]:
    X, y = _regression()
    if getattr(estimator, "family", None) == "poisson":
        return X, np.round(np.exp(0.3 * y - 0.5 * (0.3 * y).mean()))
    return (X, _labels(X)) if hasattr(estimator, "predict_proba") else (X, y)


@pytest.mark.parametrize("estimator", ONE_OF_EACH, ids=lambda e: type(e).__name__)
def test_clone_pipeline_cross_validation_and_grid_search(estimator):
    X, y = _data_for(estimator)
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params() and copy is not estimator
    with pytest.raises(NotFittedError):
        copy.predict(X)
    pipe = make_pipeline(StandardScaler(), copy).fit(X, y)
    predicted = pipe.predict(X[:5])
    assert isinstance(predicted, np.ndarray) and predicted.shape == (5,)
    scores = cross_val_score(clone(estimator), X, y, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    grid = {"fit_intercept": [True, False]} if hasattr(estimator, "fit_intercept") else {
        "prior_scale": np.arange(1, 3)  # numpy's integers, as a user's grid holds them
    }
    search = GridSearchCV(clone(estimator), grid, cv=2, error_score="raise").fit(X, y)
    (name, values), = grid.items()
    assert search.best_params_[name] in values and hasattr(search, "best_estimator_")


def test_numpy_scalars_are_numbers():
    """Hyper-parameters given as numpy scalars (``np.float32``, ``np.int64``: not Python
    ``float`` or ``int`` subclasses) fit the same model as the Python numbers."""
    X, y = _regression()
    settings = {"temperature": 0.5, "prior_scale": 2, "learning_rate": 0.01, "n_epochs": 3}
    numpy = {"temperature": np.float32(0.5), "prior_scale": np.int64(2),
             "learning_rate": np.float32(0.01), "n_epochs": np.int64(3)}
    for method in ("layers", "ivon"):
        python_fit = nb.BNNRegressor(hidden=(4,), method=method, **settings).fit(X, y)
        numpy_fit = nb.BNNRegressor(hidden=(4,), method=method, **numpy).fit(X, y)
        np.testing.assert_array_equal(numpy_fit.predict(X[:5]), python_fit.predict(X[:5]))
    exact = {"method": "exact", "noise_prior": None}
    np.testing.assert_array_equal(
        nb.BayesianLinearRegression(prior_scale=np.float32(2.0), **exact).fit(X, y).coef_,
        nb.BayesianLinearRegression(prior_scale=2.0, **exact).fit(X, y).coef_)


def test_numpy_outputs():
    X, y = _regression()
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    reg.fit(X, y)
    mean, sd = reg.predict(X[:4], return_std=True)
    assert isinstance(mean, np.ndarray) and isinstance(sd, np.ndarray) and sd.shape == (4,)
    assert isinstance(reg.coef_, np.ndarray) and reg.coef_.shape == (3,)
    assert isinstance(reg.intercept_, float) and isinstance(reg.noise_scale_, float)
    assert -1 <= reg.score(X, y) <= 1  # R^2
    clf = nb.BayesianGLMClassifier(fit_options={"max_steps": 100}).fit(X, _labels(X))
    probs = clf.predict_proba(X[:4])
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1.0)
    assert list(clf.classes_) == ["no", "yes"] and set(clf.predict(X)) <= {"no", "yes"}
    assert 0 <= clf.score(X, _labels(X)) <= 1  # accuracy


def test_data_frame_columns_are_checked_by_name():
    X, y = _regression()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    reg.fit(frame, y)
    assert list(reg.feature_names_in_) == ["a", "b", "c"] and reg.n_features_in_ == 3
    with pytest.raises(ValueError, match="The feature names should match those that were"):
        reg.predict(frame[["c", "a", "b"]])
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        reg.predict(frame.rename(columns={"a": "z"}))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        reg.predict(X)


def test_init_keeps_arguments_and_fit_checks_them():
    assert nb.BNNRegressor(hidden=50).get_params()["hidden"] == 50
    reg = nb.BNNRegressor(hidden=5, n_epochs=2).fit(*_regression())
    assert reg.posterior_ is not None and reg.n_components_ == 3  # the layers' default
    assert all(network[0].in_features == 3 for network in reg.model_.components)
    with pytest.raises(TypeError, match="unexpected keyword argument 'famly'"):
        nb.BayesianGLM(famly="poisson")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^fit_options must be a dict of nb.fit arguments or "
                       r"None, got 3"):
        nb.BayesianLinearRegression(fit_options=3).fit(*_regression())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^fit_options must not hold 'seed': they are "
                       r"arguments of BayesianGLM"):
        nb.BayesianGLM(fit_options={"seed": 1}).fit(*_regression())
    with pytest.raises(ValueError, match=r"^Only binary classification is supported"):
        nb.BayesianGLMClassifier().fit(np.ones((6, 1)), [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"^family must be one of 'poisson', 'negative_binomial', "
                       r"'student_t', 'gaussian', got 'bernoulli': binary labels are classified "
                       r"by nb.BayesianGLMClassifier"):
        nb.BayesianGLM("bernoulli").fit(*_regression())  # type: ignore[arg-type]
