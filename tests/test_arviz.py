"""``post.to_arviz()``: an InferenceData that ArviZ's own summaries and LOO accept."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import torch
from torch.distributions import HalfNormal, Normal

import noisybayes as nb


class Line(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 10.0), shape=(2,))
        self.sigma = nb.param(HalfNormal(torch.tensor(5.0, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, self.sigma)


@pytest.fixture(scope="module")
def fitted():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5], dtype=torch.float64) + 0.5 * torch.randn(
        60, generator=g, dtype=torch.float64
    )
    return nb.fit(Line(), x, y, seed=0, progress=False), x, y


def test_groups_shapes_and_metadata(fitted):
    post, x, y = fitted
    idata = post.to_arviz(n_chains=2, n_draws=300, seed=0)
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(
        idata.groups()
    )
    assert idata.posterior["beta"].shape == (2, 300, 2)
    assert idata.posterior["sigma"].shape == (2, 300)
    assert idata.posterior_predictive["y"].shape == (2, 300, 60)
    assert idata.log_likelihood["y"].shape == (2, 300, 60)
    np.testing.assert_array_equal(idata.observed_data["y"].values, y.numpy())
    attrs = idata.attrs
    assert idata.posterior.attrs["family"] == "fullrank"
    assert attrs["family"] == "fullrank"
    assert attrs["temperature"] == 1.0
    assert attrs["khat"] == post.info.khat
    assert np.isfinite(attrs["elbo"])


def test_pointwise_log_likelihood_is_the_model_density(fitted):
    post, x, y = fitted
    idata = post.to_arviz(n_chains=1, n_draws=5, seed=0)
    beta = torch.from_numpy(idata.posterior["beta"].values[0])
    sigma = torch.from_numpy(idata.posterior["sigma"].values[0])
    expected = Normal(beta @ x.T, sigma[:, None]).log_prob(y)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0], expected.numpy(), rtol=1e-10)


def test_summary_and_loo_accept_it(fitted):
    post, *_ = fitted
    idata = post.to_arviz(seed=0)
    table = az.summary(idata)
    assert list(table.index) == ["beta[0]", "beta[1]", "sigma"]
    np.testing.assert_allclose(table["mean"], post.summary()["mean"], atol=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    assert (loo.pareto_k.values < 0.7).all()


def test_independent_draws_are_one_chain_without_r_hat():
    """A mean-field fit of an uncentred line, which check() says not to trust: az.summary
    must not show r_hat ~ 1 for it. One chain of independent draws: r_hat is not computed,
    and the attributes say what the draws are and give the k-hat that judges them."""
    g = torch.Generator().manual_seed(1)
    x = torch.stack([torch.ones(80, dtype=torch.float64),
                     5.0 + torch.rand(80, generator=g, dtype=torch.float64)], 1)
    y = x @ torch.tensor([1.0, 0.5], dtype=torch.float64) + torch.randn(
        80, generator=g, dtype=torch.float64)
    post = nb.fit(Line(), x, y, family="meanfield", seed=0, progress=False)
    assert post.check(seed=0).reading == "do not trust"
    idata = post.to_arviz(n_draws=400, seed=0)
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 400
    assert idata.posterior.attrs["draws"].startswith("independent draws")
    table = az.summary(idata)
    assert table["r_hat"].isna().all()


def test_dims_and_coords_name_parameters_and_observations(fitted):
    post, *_ = fitted
    idata = post.to_arviz(
        n_draws=10, seed=0, dims={"beta": ["feature"]}, coords={"feature": ["age", "income"]}
    )
    assert idata.posterior["beta"].dims == ("chain", "draw", "feature")
    assert list(idata.posterior["feature"].values) == ["age", "income"]
    for group in ("observed_data", "posterior_predictive", "log_likelihood"):
        assert "obs" in idata[group]["y"].dims, group
    assert list(az.summary(idata, kind="stats").index) == ["beta[age]", "beta[income]", "sigma"]


def test_export_needs_data(fitted):
    post, x, y = fitted
    bare = nb.GaussianPosterior(post.model, post.layout, post.family, post.info)
    with pytest.raises(ValueError, match=r"to_arviz\(\) needs the data .*: pass x and y"):
        bare.to_arviz()
    assert bare.to_arviz(x, y, n_chains=1, n_draws=10, seed=0).posterior["beta"].shape == (1, 10, 2)
    with pytest.raises(ValueError, match="n_chains must be an integer >= 1, got 0"):
        post.to_arviz(n_chains=0)


def test_an_estimator_exports_on_the_users_scale():
    """Fitted to a standardised response, the estimator still reports y, its predictive
    draws and ``log p(y_i | theta_s)`` in y's own units: the density is the Normal of the
    user-scale posterior draws ``(intercept, coef, sigma)`` at the user's y."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    y = 1000.0 + X @ np.array([30.0, -20.0]) + 5.0 * rng.normal(size=40)
    reg = nb.BayesianLinearRegression(method="vi", seed=0).fit(X, y)
    idata = reg.to_arviz(n_chains=1, n_draws=50)
    np.testing.assert_allclose(idata.observed_data["y"].values, y)
    draws = idata.posterior
    mean = draws["intercept"].values[0][:, None] + draws["coef"].values[0] @ X.T
    expected = Normal(torch.from_numpy(mean),
                      torch.from_numpy(draws["sigma"].values[0])[:, None]).log_prob(
                          torch.from_numpy(y))
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0], expected.numpy(), rtol=1e-4)
    simulated = idata.posterior_predictive["y"].values[0]
    # a draw is mean + sigma * z: within 5 sigma of its own mean, on y's scale
    assert (np.abs(simulated - mean) < 5 * draws["sigma"].values[0][:, None]).all()
    held_out = reg.to_arviz(X[:7], y[:7], n_chains=1, n_draws=10)
    np.testing.assert_allclose(held_out.observed_data["y"].values, y[:7])
    with pytest.raises(ValueError, match=r"to_arviz\(\) needs both X and y, got y=None"):
        reg.to_arviz(X[:7])


def test_an_estimator_exports_one_chain_with_coefficients_named_after_the_features():
    """A DataFrame's column names become the ``feature`` coordinates of ``coef``; the draws
    sit in one chain, so ``az.summary`` cannot print a reassuring r_hat of 1.0."""
    import pandas as pd

    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["age", "bmi", "bp"])
    y = X.to_numpy() @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=60)
    reg = nb.BayesianLinearRegression(seed=0).fit(X, y)
    idata = reg.to_arviz(n_draws=200)
    coef = idata.posterior["coef"]
    assert coef.dims == ("chain", "draw", "feature")
    assert list(coef["feature"].values) == ["age", "bmi", "bp"]
    assert idata.posterior.sizes["chain"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=["coef"])
    assert list(table.index) == ["coef[age]", "coef[bmi]", "coef[bp]"]
    assert table["r_hat"].isna().all()
    unnamed = nb.BayesianLinearRegression(seed=0).fit(X.to_numpy(), y).to_arviz(n_draws=20)
    assert list(unnamed.posterior["coef"]["feature"].values) == ["x0", "x1", "x2"]
