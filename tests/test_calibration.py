"""``nb.calibration``: scores of predictive draws against the closed forms and known laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import noisybayes as nb
from noisybayes.math.calibration import crps_from_draws, crps_normal, ks_uniform, log_mean_exp

# The Kolmogorov distribution's 99% quantile: P(sqrt(n) D_n > 1.628) ≈ 0.01 for uniforms.
KS_99 = 1.628


@pytest.fixture(scope="module")
def gaussian_forecast():
    """``S`` draws from N(loc_i, scale_i) for each of ``n`` rows, and ``y_i`` from the same law."""
    gen = torch.Generator().manual_seed(0)
    n, n_draws = 400, 2000
    loc = torch.randn(n, generator=gen, dtype=torch.float64) * 3
    scale = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
    draws = loc + scale * torch.randn(n_draws, n, generator=gen, dtype=torch.float64)
    y = loc + scale * torch.randn(n, generator=gen, dtype=torch.float64)
    return loc, scale, draws, y


def test_crps_from_draws_matches_the_gaussian_closed_form(gaussian_forecast):
    loc, scale, draws, y = gaussian_forecast
    estimate = crps_from_draws(draws, y)
    exact = crps_normal(loc, scale, y)
    # Monte Carlo error of the estimate: dominated by the mean of |Y - y| over S draws
    mc_sd = (draws - y).abs().std(0) / math.sqrt(draws.shape[0])
    assert ((estimate - exact).abs() / mc_sd).max() < 4.5
    # averaged over the rows the error shrinks by sqrt(n)
    assert abs(float((estimate - exact).mean())) < 4 * float(mc_sd.pow(2).mean().sqrt()) / 20


def test_crps_normal_at_the_centre():
    """At ``y = loc``, ``CRPS = scale (2 phi(0) - 1/sqrt(pi)) = scale (sqrt 2 - 1) / sqrt(pi)``."""
    value = crps_normal(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.0))
    assert float(value) == pytest.approx(2 * (math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_calibrated_forecast_has_uniform_pit_and_nominal_coverage(gaussian_forecast):
    _, _, draws, y = gaussian_forecast
    report = nb.calibration(draws, y)
    n = y.shape[0]
    # PIT takes values on a grid of 1/S: allow that beside the KS 99% bound
    assert report.pit_ks < KS_99 / math.sqrt(n) + 1 / draws.shape[0]
    for level, covered in zip(report.levels, report.coverage, strict=True):
        binomial_sd = math.sqrt(level * (1 - level) / n)
        assert abs(covered - level) < 3.5 * binomial_sd, (level, covered)
    assert report.log_density is None and report.mean_log_density is None
    assert report.n_data == n and report.n_draws == draws.shape[0]


def test_too_narrow_forecast_is_flagged(gaussian_forecast):
    loc, _, draws, y = gaussian_forecast
    narrow = loc + (draws - loc) * 0.3
    report = nb.calibration(narrow, y)
    assert report.pit_ks > 2 * KS_99 / math.sqrt(y.shape[0])
    assert report.coverage[-1] < 0.75
    assert report.mean_crps > nb.calibration(draws, y).mean_crps


def test_randomised_pit_is_uniform_for_counts():
    gen = torch.Generator().manual_seed(1)
    n = 600
    rate = torch.rand(n, generator=gen, dtype=torch.float64) * 4 + 0.2
    draws = torch.poisson(rate.expand(1000, n).contiguous(), generator=gen)
    y = torch.poisson(rate, generator=gen)
    report = nb.calibration(draws, y, seed=3)
    assert report.pit_ks < KS_99 / math.sqrt(n) + 1 / 1000
    assert all(c >= level - 3.5 * math.sqrt(level * (1 - level) / n)
               for level, c in zip(report.levels, report.coverage, strict=True))


def test_log_mean_exp_and_ks_closed_forms():
    logs = torch.log(torch.tensor([[1.0], [2.0], [3.0], [6.0]], dtype=torch.float64))
    assert float(log_mean_exp(logs)[0]) == pytest.approx(math.log(3.0))
    assert ks_uniform(torch.tensor([0.5])) == pytest.approx(0.5)
    assert ks_uniform((torch.arange(10) + 0.5) / 10) == pytest.approx(0.05)


@pytest.fixture(scope="module")
def exact_linear():
    """Known noise and a Normal prior: the predictive is exactly N(x mu, sigma^2 + x Sigma x)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 2)) * [1.0, 5.0] + [0.0, 20.0]
    y = 1.0 + X @ [0.5, -0.3] + rng.normal(scale=2.0, size=120)
    reg = nb.BayesianLinearRegression(method="exact", noise_scale=2.0, prior_scale=5.0)
    return reg.fit(X[:80], y[:80]), X[80:], y[80:]


def test_predictive_draws_give_the_exact_log_predictive_density(exact_linear):
    reg, X_test, y_test = exact_linear
    pred = reg.predictive_draws(X_test, y_test, n_samples=4000, seed=5)
    assert pred.draws.shape == (4000, 40) and pred.log_likelihood is not None
    exact = reg.predict_distribution(X_test, n_samples=20_000)
    closed = torch.distributions.Normal(exact.mean, exact.sd).log_prob(torch.tensor(y_test))
    report = nb.calibration(pred, y_test)
    assert report.log_density is not None and report.mean_log_density is not None
    # p(y | theta_s) varies little between draws: the log-mean-exp is accurate to ~1e-3
    torch.testing.assert_close(report.log_density, closed, atol=0.01, rtol=0)
    mc_sd = exact.sd / math.sqrt(4000)
    assert ((pred.draws.mean(0) - exact.mean).abs() / mc_sd).max() < 4.5
    assert ((pred.draws.std(0) / exact.sd) - 1).abs().max() < 4.5 / math.sqrt(2 * 4000)


def test_predictive_draws_from_a_posterior_and_the_plot(exact_linear):
    reg, X_test, y_test = exact_linear
    x_std = reg._inputs(X_test)
    pred = nb.predictive_draws(reg.posterior_, x_std, n_samples=50, seed=0)
    assert pred.draws.shape == (50, 40) and pred.log_likelihood is None
    fig = nb.plot_calibration(nb.calibration(reg.predictive_draws(X_test, y_test), y_test))
    assert len(fig.axes) == 2


def test_errors(exact_linear, gaussian_forecast):
    reg, X_test, y_test = exact_linear
    _, _, draws, y = gaussian_forecast
    prediction = reg.predict_distribution(X_test)
    with pytest.raises(TypeError, match=r"^pred must be nb.PredictiveDraws or a tensor of draws "
                       r"\(n_samples, n\), got Prediction"):
        nb.calibration(prediction, y_test)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^levels must be numbers in \(0, 1\), got \[0.5, 1.2\]"):
        nb.calibration(draws, y, levels=(0.5, 1.2))
    with pytest.raises(ValueError, match=r"^levels must be numbers in \(0, 1\), got \[\]"):
        nb.calibration(draws, y, levels=())
    with pytest.raises(ValueError, match=r"^pred must hold draws of shape \(n_samples >= 2, n\), "
                       r"got \(1, 400\)"):
        nb.calibration(draws[:1], y)
    with pytest.raises(ValueError, match=r"^y must have one value per column of the draws \(400\), "
                       r"got 399"):
        nb.calibration(draws, y[:-1])
    with pytest.raises(ValueError, match=r"^draws must number at least 2 for the CRPS, got 1"):
        crps_from_draws(draws[:1], y)
    x_std = reg._inputs(X_test)
    with pytest.raises(ValueError, match=r"^y must have the shape of the predictions \(40,\), "
                       r"got \(39,\)"):
        nb.predictive_draws(reg.posterior_, x_std, y_test[:-1])
    with pytest.raises(ValueError, match=r"^n_samples must be an integer >= 1, got 0"):
        nb.predictive_draws(reg.posterior_, x_std, n_samples=0)
    with pytest.raises(TypeError, match=r"^report must be an nb.CalibrationReport, got dict"):
        nb.plot_calibration({})  # type: ignore[arg-type]


def test_held_out_labels_outside_the_support_are_refused():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 1))
    y = (rng.random(60) < 0.5).astype(float)
    clf = nb.BayesianGLMClassifier(fit_options={"max_steps": 200}).fit(X, y)
    with pytest.raises(ValueError, match=r"^y must lie in the support of the likelihood "
                       r"\(Boolean\(\)\), got 1 value\(s\) outside, e.g. 2.0 at row 3"):
        clf.predictive_draws(X[:5], [0.0, 1.0, 0.0, 2.0, 1.0])
