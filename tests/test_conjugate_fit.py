"""VI against the closed-form posterior of conjugate linear regression (known noise).

Features are correlated (pairwise 0.8, mean 1), so the exact marginal sds and the mean-field
optimum ``1/sqrt(Lambda_jj)`` differ by a factor of ~3: a fit cannot pass both checks by luck.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

import noisybayes as nb

NOISE = 1.0
PRIOR_SCALE = 10.0


class KnownNoiseLine(nb.Model):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.beta = nb.param(
            Normal(torch.tensor(0.0, dtype=torch.float64), PRIOR_SCALE), shape=(d,)
        )

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, NOISE)


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(1)
    n, d = 200, 4
    cov = 0.8 * torch.ones(d, d, dtype=torch.float64) + 0.2 * torch.eye(d, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T + 1.0
    beta = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    y = x @ beta + NOISE * torch.randn(n, generator=g, dtype=torch.float64)
    exact = nb.gaussian_linear_posterior(x, y, NOISE, 0.0, PRIOR_SCALE**-2)
    return x, y, exact


def test_exact_posterior_matches_least_squares_limits(problem):
    """Flat prior: mean = OLS, covariance = sigma^2 (X^T X)^{-1}."""
    x, y, _ = problem
    flat = nb.gaussian_linear_posterior(x, y, NOISE)
    ols = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    torch.testing.assert_close(flat.loc, ols)
    torch.testing.assert_close(flat.covariance, NOISE**2 * torch.linalg.inv(x.T @ x))


def test_fixed_precision_posterior_mean_is_ridge(problem):
    """Bayesian ridge at fixed precisions equals ridge with penalty sigma^2 / tau^2."""
    x, y, exact = problem
    penalty = NOISE**2 / PRIOR_SCALE**2
    ridge = torch.linalg.solve(x.T @ x + penalty * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    torch.testing.assert_close(exact.loc, ridge)


def test_fullrank_recovers_the_exact_posterior(problem):
    x, y, exact = problem
    post = nb.fit(KnownNoiseLine(4), x, y, family="fullrank", seed=0, progress=False)
    z = (post.mean["beta"] - exact.loc) / exact.scale
    assert z.abs().max() < 0.05, z
    assert (post.sd["beta"] / exact.scale - 1).abs().max() < 0.05
    cov = post.family.covariance()
    assert torch.allclose(
        cov, exact.covariance, rtol=0.1, atol=0.05 * float(exact.scale.min()) ** 2
    )


def test_meanfield_recovers_its_known_optimum(problem):
    """Reverse-KL mean-field optimum for a Gaussian target: exact means, sd_j = 1/sqrt(Lambda_jj)."""
    x, y, exact = problem
    assert (exact.scale / exact.meanfield_scale).min() > 2.0  # the two answers differ
    post = nb.fit(KnownNoiseLine(4), x, y, family="meanfield", seed=0, progress=False)
    z = (post.mean["beta"] - exact.loc) / exact.scale
    assert z.abs().max() < 0.05, z
    assert (post.sd["beta"] / exact.meanfield_scale - 1).abs().max() < 0.05


def _gaussian_elbo(family, exact) -> float:
    """ELBO of ``q = N(m, S)`` for a Gaussian target ``N(mu, Lambda^{-1})``, up to a constant:
    ``-tr(Lambda S)/2 - (m - mu)^T Lambda (m - mu)/2 + log det S / 2``."""
    m, cov, lam = family.mean(), family.covariance(), exact.precision
    diff = m - exact.loc
    return float(-0.5 * torch.trace(lam @ cov) - 0.5 * diff @ lam @ diff + 0.5 * torch.logdet(cov))


def test_lowrank_sits_between_meanfield_and_fullrank(problem):
    x, y, exact = problem
    elbo = {}
    for family, rank in [("meanfield", 1), ("lowrank", 2), ("lowrank", 4), ("fullrank", 1)]:
        post = nb.fit(KnownNoiseLine(4), x, y, family=family, rank=rank, seed=0, progress=False)
        elbo[family, rank] = _gaussian_elbo(post.family, exact)
        z = (post.mean["beta"] - exact.loc) / exact.scale
        assert z.abs().max() < 0.05, (family, rank, z)
        if (family, rank) == ("lowrank", 4):  # rank P: the family holds the exact posterior
            assert (post.sd["beta"] / exact.scale - 1).abs().max() < 0.05
    optimum = -0.5 * 4 + 0.5 * float(torch.logdet(exact.covariance))
    assert elbo["meanfield", 1] < elbo["lowrank", 2] < optimum + 1e-3
    assert abs(elbo["fullrank", 1] - optimum) < 0.01
    assert abs(elbo["lowrank", 4] - optimum) < 0.01


def test_fit_is_reproducible_with_a_seed(problem):
    x, y, _ = problem
    a = nb.fit(KnownNoiseLine(4), x, y, seed=3, progress=False, max_steps=300)
    b = nb.fit(KnownNoiseLine(4), x, y, seed=3, progress=False, max_steps=300)
    torch.testing.assert_close(a.family.covariance(), b.family.covariance(), rtol=0, atol=0)


def test_float32_data_fits_in_float32(problem):
    x, y, exact = problem
    post = nb.fit(KnownNoiseLine(4), x.float(), y.float(), seed=0, progress=False)
    assert post.mean["beta"].dtype == torch.float32
    z = (post.mean["beta"].double() - exact.loc) / exact.scale
    assert z.abs().max() < 0.05


def test_restarted_iterate_average_is_an_average(problem):
    """Force one averaging window to count as 'still improving': the average restarts and
    the answer must still be the exact posterior (it once came out (k+1)/k too large)."""
    from noisybayes.engine import Decision, StallSchedule, TensorSource, Trainer
    from noisybayes.infer.fit import FamilyObjective, _build_family, _whitened_curvature
    from noisybayes.infer.laplace import laplace
    from noisybayes.infer.objective import LogJoint
    from noisybayes.model.layout import ParamLayout

    class OneRestart(StallSchedule):
        restarted = False

        def observe(self, window):
            decision = super().observe(window)
            if decision.averaging == "add" and not self.restarted:
                self.restarted, self.averaged = True, 0
                return Decision("restart")
            return decision

    x, y, exact = problem
    model = KnownNoiseLine(4)
    layout = ParamLayout(model)
    log_joint = LogJoint(model, layout)
    gen = torch.Generator().manual_seed(0)
    mode = laplace(log_joint, ((x,), y), torch.zeros(layout.size, dtype=x.dtype), gen, 10_000)
    family = _build_family("fullrank", mode.loc, mode.precision, 0)
    objective = FamilyObjective(log_joint, family, len(y), 16, gen, None,
                                _whitened_curvature(family, mode.precision))
    schedule = OneRestart(0.05, len(y))
    result = Trainer(objective, TensorSource((x,), y), schedule, batch_size=len(y),
                     generator=gen, max_steps=10_000).run()
    assert schedule.restarted and result is not None and result.converged
    z = (family.mean().detach() - exact.loc) / exact.scale
    sd_ratio = family.variance().detach().sqrt() / exact.scale
    assert z.abs().max() < 0.05
    assert (sd_ratio - 1).abs().max() < 0.05
