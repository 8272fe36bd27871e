"""``BayesianLinearRegression``: the estimator contract and its agreement with the exact answer."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import noisybayes as nb
from tests.reference_models import load


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 2.0]
    y = 3.0 + X @ np.array([1.5, -0.2, 4.0]) + rng.normal(scale=2.0, size=300)
    return X, y


def test_vi_agrees_with_the_exact_normal_inverse_gamma_posterior(data):
    X, y = data
    flat = {"prior_scale": None, "noise_prior": None}
    exact = nb.BayesianLinearRegression(method="exact", **flat).fit(X, y)
    vi = nb.BayesianLinearRegression(**flat).fit(X, y)
    e, v = exact.summary(), vi.summary()
    z = (v["mean"] - e["mean"]) / e["sd"]
    assert z.abs().max() < 0.1, z
    assert (v["sd"] / e["sd"] - 1).abs().max() < 0.1


def test_exact_normal_inverse_gamma_matches_stan_on_earnings():
    """Flat beta, flat sigma: the exact posterior against 10,000 NUTS draws."""
    ref = load("earnings-logearn_height")
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    reg.fit(ref.x[:, 1:].numpy(), ref.y.numpy())
    table = reg.summary()
    for ours, theirs in [("intercept", "beta[0]"), ("coef[0]", "beta[1]"), ("sigma", "sigma")]:
        draws = ref.column(theirs)
        assert abs(table.loc[ours, "mean"] - float(draws.mean())) < 0.05 * float(draws.std())
        assert abs(table.loc[ours, "sd"] / float(draws.std()) - 1) < 0.05


def test_known_noise_exact_is_the_gaussian_closed_form(data):
    X, y = data
    reg = nb.BayesianLinearRegression(method="exact", noise_scale=2.0, prior_scale=5.0).fit(X, y)
    design = torch.cat([torch.ones(len(y), 1, dtype=torch.float64), torch.tensor(X)], 1)
    closed = nb.gaussian_linear_posterior(
        design,
        torch.tensor(y),
        2.0,
        0.0,
        torch.tensor([0.0, 0.04, 0.04, 0.04], dtype=torch.float64),
    )
    torch.testing.assert_close(torch.as_tensor(reg.coef_), closed.loc[1:])
    torch.testing.assert_close(reg.posterior_.sd["coef"], closed.scale[1:])
    info = reg.posterior_.info
    assert (info.family, info.solver, info.n_steps) == ("exact", "exact", 0)


def test_estimator_contract(data):
    X, y = data
    reg = nb.BayesianLinearRegression()
    assert reg.fit(X, y) is reg
    assert reg.coef_.shape == (3,) and np.shape(reg.intercept_) == () and reg.noise_scale_ > 0
    assert abs(float(reg.noise_scale_) - 2.0) < 0.3
    mean, sd = reg.predict(X[:5], return_std=True)
    pred = reg.predict_distribution(X[:5])
    torch.testing.assert_close(torch.as_tensor(sd) ** 2, pred.epistemic_sd**2 + pred.aleatoric_sd**2)
    assert (sd > reg.noise_scale_ * 0.95).all()  # total sd includes the noise
    noise = torch.full((5,), reg.noise_scale_, dtype=pred.aleatoric_sd.dtype)
    torch.testing.assert_close(pred.aleatoric_sd, noise, rtol=0.05, atol=0)


def test_accepts_numpy_tensors_and_frames(data):
    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    flat = {"method": "exact", "prior_scale": None, "noise_prior": None}
    from_numpy = nb.BayesianLinearRegression(**flat).fit(X, y)
    from_frame = nb.BayesianLinearRegression(**flat).fit(frame, pd.Series(y))
    from_tensor = nb.BayesianLinearRegression(**flat).fit(torch.tensor(X), torch.tensor(y))
    torch.testing.assert_close(torch.as_tensor(from_numpy.coef_), torch.as_tensor(from_frame.coef_))
    torch.testing.assert_close(
        torch.as_tensor(from_numpy.coef_), torch.as_tensor(from_tensor.coef_)
    )
    assert list(from_frame.summary().index) == ["intercept", "a", "b", "c", "sigma"]


def test_predictive_interval_coverage(data):
    """94% predictive intervals cover ~94% of new draws from the true model (binomial:
    sd = sqrt(.94 * .06 / 2000) = 0.0053, so +-0.02 is ~4 sd)."""
    X, y = data
    reg = nb.BayesianLinearRegression().fit(X, y)
    rng = np.random.default_rng(1)
    X_new = rng.normal(size=(2000, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 2.0]
    y_new = 3.0 + X_new @ np.array([1.5, -0.2, 4.0]) + rng.normal(scale=2.0, size=2000)
    pred = reg.predict_distribution(X_new)
    y_t = torch.tensor(y_new)
    coverage = float(((pred.lower <= y_t) & (y_t <= pred.upper)).double().mean())
    assert abs(coverage - 0.94) < 0.02, coverage


def test_float32_input_fits_in_float32(data):
    X, y = data
    reg = nb.BayesianLinearRegression(prior_scale=None, noise_prior=None)
    reg.fit(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    exact = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    exact.fit(X, y)
    assert reg.coef_.dtype == np.float32
    z = (torch.as_tensor(reg.coef_).double() - torch.as_tensor(exact.coef_)) / exact.posterior_.sd[
        "coef"
    ]
    assert z.abs().max() < 0.1


def test_formula_estimator_predicts_from_raw_rows():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=80), "g": rng.choice(["u", "v"], size=80)})
    frame["y"] = 2.0 * frame["a"] + (frame["g"] == "u") + rng.normal(size=80)
    reg = nb.BayesianLinearRegression.from_formula(
        "y ~ a + C(g)", frame, method="exact", prior_scale=None, noise_prior=None
    )
    from_rows = reg.predict(frame.head(5))
    from_design = reg.predict(reg.formula_.transform(frame.head(5)).X)
    torch.testing.assert_close(torch.as_tensor(from_rows), torch.as_tensor(from_design))
    holed = frame.head(3).copy()
    holed.loc[1, "a"] = np.nan  # one prediction per row: a hole is refused, not skipped
    with pytest.raises(ValueError, match=r"no missing values .* \(a: 1\)"):
        reg.predict(holed)


def test_student_t_regression_predicts_with_the_t_variance():
    """Predictive sd of a t likelihood: sqrt(epistemic^2 + sigma^2 df / (df - 2))."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(150, 2, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, 2.0], dtype=torch.float64) + torch.randn(
        150, generator=g, dtype=torch.float64
    )
    reg = nb.StudentTLinearRegression().fit(X, y)
    pred = reg.predict_distribution(X[:4])
    assert torch.isfinite(pred.sd).all()
    torch.testing.assert_close(pred.sd**2, pred.epistemic_sd**2 + pred.aleatoric_sd**2)
    assert (pred.aleatoric_sd > 0.8).all() and (pred.aleatoric_sd < 1.5).all()


def test_exact_says_it_ignores_the_variational_settings():
    """As scikit-learn's estimators do with a setting another one makes moot (a grid over
    ``method`` shares the others): a warning, and the exact posterior."""
    X, y = np.random.default_rng(0).normal(size=(10, 2)), np.arange(10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say at the defaults
        exact = nb.BayesianLinearRegression(method="exact").fit(X, y)
    for setting in ({"family": "meanfield"}, {"fit_options": {"max_steps": 5}}):
        (name, value), = setting.items()
        with pytest.warns(UserWarning, match=re.escape(
                f"{name}={value!r} is ignored with method='exact': the exact posterior runs "
                f"no variational fit")) as record:
            fit = nb.BayesianLinearRegression(method="exact", **setting).fit(X, y)
        assert len(record) == 1  # about that setting alone
        np.testing.assert_array_equal(fit.coef_, exact.coef_)
    with pytest.raises(ValueError, match=r"^family must be one of 'auto', 'meanfield', "
                       r"'lowrank', 'fullrank', got 'bogus'$"):
        nb.BayesianLinearRegression(method="exact", family="bogus").fit(X, y)


def test_exact_with_too_few_rows_for_the_noise():
    """Flat priors on p coefficients and sigma need n > p + 1 rows for a proper posterior of
    the noise, and n > p + 3 for a finite variance of the coefficients."""
    X = np.arange(8.0).reshape(4, 2) ** 1.5
    y = np.array([1.0, 3.0, 2.0, 5.0])
    flat = {"method": "exact", "prior_scale": None, "noise_prior": None}
    with pytest.raises(ValueError, match=r"noise_prior=None \(a flat prior on the noise scale\) "
                                         r"needs at least 2 more rows than the design's rank, "
                                         r"got 4 rows and rank 3"):
        nb.BayesianLinearRegression(**flat).fit(X, y)
    X5 = np.vstack([X, [[9.0, 2.0]]])
    reg = nb.BayesianLinearRegression(**flat).fit(X5, np.append(y, 4.0))
    assert torch.isinf(reg.posterior_.family.variance()[:3]).all()  # a = 1/2: no variance


@pytest.mark.parametrize("n_rows", [5, 6, 7, 12])
def test_the_flat_prior_noise_moments_are_the_closed_form_and_infinite_where_it_is(n_rows):
    """Flat priors, p = 3 coefficients: ``sigma^2 ~ InvGamma(a, RSS / 2)``, ``a = (n - p - 1)
    / 2``; ``E sigma = sqrt(b) Gamma(a - 1/2) / Gamma(a)`` (infinite for ``a <= 1/2``),
    ``Var sigma`` infinite for ``a <= 1``, and then the Student-t predictive (``2a``
    degrees of freedom) has no variance: reported as such, not as an average of draws."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n_rows, 2))
    y = 1 + X @ [0.5, -1.0] + 0.7 * rng.normal(size=n_rows)
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    sigma = reg.fit(X, y).summary().loc["sigma"]
    design = np.c_[np.ones(n_rows), X]
    rss = float(np.sum((y - design @ np.linalg.lstsq(design, y, rcond=None)[0]) ** 2))
    a, b = (n_rows - 4) / 2, rss / 2
    mean = math.sqrt(b) * math.exp(math.lgamma(a - 0.5) - math.lgamma(a)) if a > 0.5 else math.inf
    sd = math.sqrt(b / (a - 1) - mean**2) if a > 1 else math.inf
    np.testing.assert_allclose([sigma["mean"], sigma["sd"], reg.noise_scale_], [mean, sd, mean],
                               rtol=1e-9)
    new = np.array([[1.0, -0.5]])
    predictive_mean, predictive_sd = (v[0] for v in reg.predict(new, return_std=True))
    assert math.isinf(predictive_sd) == (a <= 1)
    if a <= 1:  # the t's centre, not an average of draws without a variance
        assert predictive_mean == pytest.approx(reg.intercept_ + new[0] @ reg.coef_, rel=1e-9)


def test_a_column_constant_to_rounding_is_left_unscaled():
    """0.1 and its neighbouring float64 number, alternating: an sd of about 7e-18, rounding
    of a constant, would scale the column by 1e17; it is treated as constant (sd 1)."""
    from noisybayes.estimators._base import location_and_scale

    column = np.where(np.arange(1000) % 2 == 0, 0.1, np.nextafter(0.1, 1.0))
    values = torch.tensor(np.c_[column, np.linspace(0.0, 1.0, 1000)])
    _, scale = location_and_scale(values, centre=True)
    assert 0 < float(values[:, 0].std(unbiased=False)) < 1e-16
    assert float(scale[0]) == 1.0 and float(scale[1]) == pytest.approx(0.2889, abs=1e-4)
