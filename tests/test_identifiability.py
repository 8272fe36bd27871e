"""Improper or mode-less posteriors are said, and where ``y`` is fitted exactly with proper
priors the linear regression's posterior is computed exactly (noise integrated on a grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Exponential, MultivariateNormal

import noisybayes as nb
from noisybayes.estimators._identifiability import (
    design_rank,
    separating_direction,
    zeros_direction,
)


@pytest.fixture(scope="module")
def wide():
    """8 rows, 20 columns: ``[1, X]`` fits ``y`` exactly."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 20)) * np.linspace(0.5, 3.0, 20)
    y = X @ rng.normal(size=20) + rng.normal(size=8)
    return X, y


def _reference(X, y, prior_sd, noise_prior, log_sigma):
    """Moments of ``(intercept, coef, log sigma)`` by quadrature on the user's scale, from
    formulas independent of the estimator's: ``p(y | sigma)`` as a multivariate normal with a
    wide intercept prior (sd 1e4, so the flat intercept is matched to ~1e-8 relative), and
    ``(intercept, coef) | sigma`` in covariance form."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    n = len(y)
    design = torch.cat([torch.ones(n, 1, dtype=X.dtype), X], 1)
    prior_var = torch.cat([torch.tensor([1e8], dtype=X.dtype), prior_sd**2])
    log_w, locs, variances = [], [], []
    for ls in log_sigma:
        sigma = float(ls.exp())
        cov = design @ torch.diag(prior_var) @ design.T + sigma**2 * torch.eye(n, dtype=X.dtype)
        log_lik = MultivariateNormal(torch.zeros(n, dtype=X.dtype), cov).log_prob(y)
        log_w.append(log_lik + noise_prior.log_prob(ls.exp()) + ls)
        # (intercept, coef) | sigma in covariance form, stable as sigma -> 0:
        # mean = P D^T C^-1 y, cov = P - P D^T C^-1 D P, C = D P D^T + sigma^2 I
        gain = torch.linalg.solve(cov, design * prior_var).T
        locs.append(gain @ y)
        variances.append(prior_var - (gain * (design * prior_var).T).sum(1))
    w = torch.softmax(torch.stack(log_w), 0)
    loc, var = torch.stack(locs), torch.stack(variances)
    mean = w @ loc
    sd = (w @ (var + loc**2) - mean**2).sqrt()
    log_sigma_mean = w @ log_sigma
    log_sigma_sd = (w @ log_sigma**2 - log_sigma_mean**2).sqrt()
    return mean, sd, log_sigma_mean, log_sigma_sd


@pytest.mark.parametrize(("method", "reason"), [
    ("auto", "exact: Gaussian given its 1 scale"),  # the scale grid (_exact_scales)
    ("vi", "X fits y exactly"),  # no mode to start VI from: solved exactly instead
])
def test_more_columns_than_rows_gives_the_exact_posterior_with_default_priors(wide, method,
                                                                               reason):
    X, y = wide
    reg = nb.BayesianLinearRegression(method=method).fit(X, y)
    assert reg.posterior_.info.family == "exact"
    assert reason in reg.posterior_.info.family_reason
    prior_sd = torch.as_tensor(2.5 * y.std() / X.std(0))
    log_sigma = torch.linspace(-20.0, 5.0, 1000, dtype=torch.float64)
    mean, sd, ls_mean, ls_sd = _reference(X, y, prior_sd, Exponential(1 / y.std()), log_sigma)
    # both integrate over log sigma (mass down to sigma -> 0) on grids of spacing < 0.08,
    # smooth integrands: agreement to 1e-3
    torch.testing.assert_close(reg.posterior_.family.mean()[:-1], mean, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(reg.posterior_.family.variance()[:-1].sqrt(), sd, rtol=1e-3,
                               atol=1e-3)
    torch.testing.assert_close(reg.posterior_.family.mean()[-1], ls_mean, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(reg.posterior_.family.variance()[-1].sqrt(), ls_sd, rtol=1e-3,
                               atol=1e-3)


def test_more_columns_than_rows_predicts_with_the_prior_s_spread(wide):
    """The issue's case: predictive sds at new rows are those of the exact posterior (tens),
    not the 1e-5 of a collapsed noise scale."""
    X, y = wide
    reg = nb.BayesianLinearRegression().fit(X, y)
    X_new = np.random.default_rng(1).normal(size=(200, 20)) * np.linspace(0.5, 3.0, 20)
    _, sd = reg.predict(X_new, return_std=True)
    known = nb.BayesianLinearRegression(method="exact", noise_scale=reg.noise_scale_).fit(X, y)
    _, sd_known = known.predict(X_new, return_std=True)
    # the noise's own uncertainty adds little to a predictive sd dominated by the coefficients
    assert np.all(np.abs(sd / sd_known - 1) < 0.1), sd / sd_known


def test_draws_of_the_grid_posterior_match_its_moments(wide):
    X, y = wide
    post = nb.BayesianLinearRegression().fit(X, y).posterior_
    draws = post.sample_unconstrained(40_000, seed=0)
    mean, sd = post.family.mean(), post.family.variance().sqrt()
    # 40,000 draws: the mean's Monte Carlo error is sd / 200; 5 standard errors
    assert ((draws.mean(0) - mean).abs() / sd).max() < 5 / 200
    # the sd's relative error is about 1/sqrt(2 * 40,000) for a Gaussian margin, wider for
    # the mixture over sigma: 3%
    assert ((draws.std(0) / sd - 1).abs()).max() < 0.03


def test_the_exact_posterior_does_not_depend_on_units(wide):
    """To 1e-6: the grid's lattice is centred by a mode search whose stopping point moves
    with rounding, which moves the sums by a part of the mass the lattice leaves out (under
    1e-4)."""
    X, y = wide
    base = nb.BayesianLinearRegression().fit(X, y)
    scaled = nb.BayesianLinearRegression().fit(X * 1e9, y * 1e-7)
    np.testing.assert_allclose(scaled.coef_, base.coef_ * 1e-16, rtol=1e-6)
    np.testing.assert_allclose(scaled.intercept_, base.intercept_ * 1e-7, rtol=1e-6)


def test_design_rank_sees_collinear_columns_on_any_scale():
    x = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    collinear = torch.cat([x, (x[:, :1] - 2 * x[:, 1:]) * 1e8], 1)
    x_std = (collinear - collinear.mean(0)) / collinear.std(0)
    assert design_rank(x_std, fit_intercept=True) == 3
    assert design_rank(x_std[:, :2], fit_intercept=True) == 3


def test_separation_is_found_by_the_linear_programme():
    x = torch.tensor([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], dtype=torch.float64)[:, None]
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert separating_direction(x, labels, fit_intercept=True)  # complete
    tied = torch.cat([x, torch.zeros(2, 1, dtype=x.dtype)])  # both classes at x = 0
    assert separating_direction(tied, torch.cat([labels, labels.new_tensor([0.0, 1.0])]),
                                fit_intercept=True)  # quasi-complete
    mixed = labels[[0, 1, 3, 2, 4, 5]]  # x = -1 labelled 1 and x = 1 labelled 0
    assert not separating_direction(x, mixed, fit_intercept=True)


def test_zeros_isolated_by_a_direction_are_found():
    group = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    counts = torch.tensor([0.0, 0.0, 3.0, 1.0, 2.0], dtype=torch.float64)
    assert zeros_direction(group, counts, fit_intercept=True)  # a group of zeros only
    assert zeros_direction(group, torch.zeros(5, dtype=torch.float64), fit_intercept=True)
    line = torch.tensor([[-2.0], [-1.0], [0.5], [1.0], [2.0]], dtype=torch.float64)
    # zeros below 0, counts above: no direction keeps the positive rows' means fixed
    assert not zeros_direction(line, counts, fit_intercept=True)
    assert not zeros_direction(group, counts + 1, fit_intercept=True)  # no zeros


def test_a_count_model_with_a_flat_prior_refuses_a_group_of_zeros():
    rng = np.random.default_rng(0)
    group = np.repeat([0.0, 1.0], 20)[:, None]
    counts = np.where(group[:, 0] == 1, 0, rng.poisson(3.0, 40))
    with pytest.raises(ValueError, match=r"prior_scale=None .* zero counts that a direction in X"):
        nb.BayesianGLM("poisson", prior_scale=None).fit(group, counts)
    reg = nb.BayesianGLM("poisson", fit_options={"max_steps": 200}).fit(group, counts)
    assert np.isfinite(reg.coef_).all()  # the default prior keeps it proper
