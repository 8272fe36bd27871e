"""The exact posterior of a linear-Gaussian model with uncertain scales
(``infer.scale_grid``): against an independent brute-force integral, its level-by-level
elimination against the dense algebra, its draws against its moments, and the estimators'
``method="exact"`` built on it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import HalfNormal

import noisybayes as nb
from noisybayes.estimators.linear import auto_method
from noisybayes.infer import scale_grid
from noisybayes.infer.scale_grid import ScaleGridPosterior, _factor_blocks

F64 = torch.float64
LEVELS, ROWS = 5, 40  # a sixth level holds no rows: a new group's slot
PRIOR_SD = torch.tensor([3.0, 2.0], dtype=F64)  # the intercept's and the slope's


def grouped_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``G = [1, x, one-hot(g) (6 levels, the last empty)]`` ``(40, 8)`` and ``y``, from
    ``y = 0.5 + x + u[g] + 0.5 eps`` with ``u ~ N(0, 0.8)``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(ROWS, generator=gen, dtype=F64)
    g = torch.arange(ROWS) % LEVELS
    u = 0.8 * torch.randn(LEVELS, generator=gen, dtype=F64)
    y = 0.5 + x + u[g] + 0.5 * torch.randn(ROWS, generator=gen, dtype=F64)
    one_hot = torch.nn.functional.one_hot(g, LEVELS + 1).to(F64)
    return torch.cat([torch.ones(ROWS, 1, dtype=F64), x[:, None], one_hot], 1), y


def half_normal_log_prior(scales: torch.Tensor) -> torch.Tensor:
    return HalfNormal(torch.tensor(1.0, dtype=F64)).log_prob(scales).sum(-1)


def grid_of(G: torch.Tensor, y: torch.Tensor, blocked: tuple[int, int],
            noise_scale: float | None = None, step: float | None = None) -> ScaleGridPosterior:
    fixed = torch.cat([PRIOR_SD.pow(-2), torch.zeros(LEVELS + 1, dtype=F64)])
    column_scale = torch.tensor([-1, -1] + [0] * (LEVELS + 1))
    return ScaleGridPosterior(G.T @ G, G.T @ y, y @ y, len(y), fixed, column_scale,
                              half_normal_log_prior, noise_scale=noise_scale, blocked=blocked,
                              n_joint=2, step=step)


def brute_force(G: torch.Tensor, y: torch.Tensor, noise_scale: float | None = None
                ) -> dict[str, torch.Tensor]:
    """The same moments from the marginal form ``y ~ N(0, sigma^2 I + G V G^T)``, ``V`` the
    prior covariance, and ``theta | s, y ~ N(V G^T S^-1 y, V - V G^T S^-1 G V)``, the log
    scales integrated on a uniform 400 x 300 grid (400 with a known noise) over a box whose
    edges hold under 1e-10 of the mass: independent of the precision form, the whitening and
    the flooded lattice."""
    log_sd = torch.linspace(-14.0, 2.0, 400, dtype=F64)
    if noise_scale is None:
        log_sigma = torch.linspace(-2.5, 1.0, 300, dtype=F64)
        grid = torch.cartesian_prod(log_sd, log_sigma)
    else:
        grid = torch.stack([log_sd, torch.full_like(log_sd, math.log(noise_scale))], 1)
    log_density, mean, variance, joint_second = [], [], [], []
    for chunk in torch.split(grid, 3000):
        sd, sigma = chunk[:, 0].exp(), chunk[:, 1].exp()
        prior_var = torch.cat([PRIOR_SD.square().expand(len(chunk), 2),
                               sd[:, None].square().expand(len(chunk), LEVELS + 1)], 1)
        GV = G * prior_var[:, None, :]  # (B, N, M)
        marginal = GV @ G.T + sigma.square()[:, None, None] * torch.eye(len(y), dtype=F64)
        chol = torch.linalg.cholesky(marginal)
        solved = torch.cholesky_solve(y.expand(len(chunk), -1)[..., None], chol)[..., 0]
        log_density.append(-chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                           - 0.5 * (y * solved).sum(-1) + half_normal_log_prior(sd[:, None])
                           + chunk[:, 0]
                           + (0.0 if noise_scale is not None else
                              half_normal_log_prior(sigma[:, None]) + chunk[:, 1]))
        m = (GV.mT @ solved[..., None])[..., 0]
        cov = torch.diag_embed(prior_var) - GV.mT @ torch.cholesky_solve(GV, chol)
        mean.append(m)
        variance.append(cov.diagonal(dim1=-2, dim2=-1))
        joint_second.append(cov[:, :2, :2] + m[:, :2, None] * m[:, None, :2])
    w = torch.softmax(torch.cat(log_density), 0)
    if noise_scale is None:
        square = w.reshape(400, 300)
        assert square[[0, -1]].sum() + square[:, [0, -1]].sum() < 1e-10
    else:
        assert w[[0, -1]].sum() < 1e-10
    mean, variance = torch.cat(mean), torch.cat(variance)
    scale = grid[:, :1].exp().expand(-1, LEVELS + 1)
    first = w @ mean[:, :2]
    log_scale = grid if noise_scale is None else grid[:, :1]
    log_mean = w @ log_scale
    scales = grid.exp() if noise_scale is None else grid[:, :1].exp()
    scale_mean = w @ scales
    return {
        "mean": w @ mean,
        "variance": w @ (variance + mean.square()) - (w @ mean).square(),
        "scale_mean": scale_mean,
        "scale_variance": w @ scales.square() - scale_mean.square(),
        "joint_mean": first,
        "joint_covariance": torch.einsum("b,bij->ij", w, torch.cat(joint_second)) - first[:, None] * first,
        "scaled_mean": torch.cat([first, w @ (mean[:, 2:] / scale)]),
        "scaled_variance": torch.cat([
            w @ (variance[:, :2] + mean[:, :2].square()) - first.square(),
            w @ ((variance[:, 2:] + mean[:, 2:].square()) / scale.square())
            - (w @ (mean[:, 2:] / scale)).square()]),
        "log_scale_mean": log_mean,
        "log_scale_covariance": (w[:, None] * log_scale).T @ log_scale - log_mean[:, None] * log_mean,
    }


@pytest.mark.parametrize("noise_scale", [None, 0.5])
def test_the_grid_matches_a_brute_force_integral(noise_scale):
    """Every moment within 1e-3 of the brute-force integral's (in posterior sds for means,
    relative for variances; for ``s`` itself, whose summaries report its sd, relative for the
    sd), of ``theta``, ``theta / s``, ``log s`` and ``s``: the lattice drops points under e^-10 of the mode's density, a
    few 1e-4 of the mass at most. The empty level's effect is its prior, ``z ~ N(0, 1)``."""
    G, y = grouped_problem()
    grid = grid_of(G, y, (LEVELS + 1, 1), noise_scale)
    reference = brute_force(G, y, noise_scale)
    moments = grid.moments
    sd = reference["scaled_variance"].sqrt()
    torch.testing.assert_close(moments.scaled_mean / sd, reference["scaled_mean"] / sd,
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(moments.scaled_variance, reference["scaled_variance"],
                               rtol=1e-3, atol=0)
    torch.testing.assert_close(moments.joint_mean, reference["joint_mean"], rtol=0,
                               atol=1e-3 * float(sd[:2].min()))
    torch.testing.assert_close(moments.joint_covariance, reference["joint_covariance"],
                               rtol=1e-3, atol=0)
    log_sd = reference["log_scale_covariance"].diagonal().sqrt()
    torch.testing.assert_close(moments.log_scale_mean / log_sd,
                               reference["log_scale_mean"] / log_sd, atol=1e-3, rtol=0)
    torch.testing.assert_close(moments.log_scale_covariance, reference["log_scale_covariance"],
                               rtol=1e-3, atol=1e-3 * float(log_sd.min()) ** 2)
    own_sd = reference["variance"].sqrt()
    torch.testing.assert_close(moments.mean / own_sd, reference["mean"] / own_sd, atol=1e-3,
                               rtol=0)
    torch.testing.assert_close(moments.variance, reference["variance"], rtol=1e-3, atol=0)
    scale_sd = reference["scale_variance"].sqrt()
    torch.testing.assert_close(moments.scale_mean / scale_sd, reference["scale_mean"] / scale_sd,
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(moments.scale_variance.sqrt(), scale_sd, rtol=1e-3, atol=0)
    assert abs(float(moments.scaled_mean[-1])) < 1e-9
    assert abs(float(moments.scaled_variance[-1]) - 1) < 1e-9


def test_eliminating_the_levels_one_by_one_is_the_dense_algebra():
    """The Schur complement over the grouping factor's levels gives the dense Cholesky's
    lattice and moments to rounding."""
    G, y = grouped_problem(1)
    blocked, dense = grid_of(G, y, (LEVELS + 1, 1)), grid_of(G, y, (0, 1))
    torch.testing.assert_close(blocked.points, dense.points, rtol=0, atol=1e-9)
    torch.testing.assert_close(blocked.log_weight, dense.log_weight, rtol=0, atol=1e-9)
    for name in ("joint_mean", "joint_covariance", "scaled_mean", "scaled_variance"):
        torch.testing.assert_close(getattr(blocked.moments, name), getattr(dense.moments, name),
                                   rtol=1e-9, atol=1e-12)


def test_draws_have_the_moments_of_the_grid_at_any_step():
    """A lattice of step 1 (the cells' uniform spread would add 8% to each whitened scale's
    variance) has the default step's moments to 1e-3 (means in sds, variances relative, as
    against the brute-force integral), and 40,000 of its draws have them too: ``theta /
    s``'s means within four Monte
    Carlo sds and variances within four relative sds (``sqrt(2 / n)``, a Gaussian's), the
    log scales' mean likewise and their covariance, the cells' spread taken out, each entry
    within five Monte Carlo sds (``sqrt((S_ii S_jj + S_ij^2) / n)``)."""
    G, y = grouped_problem(2)
    fine = grid_of(G, y, (LEVELS + 1, 1)).moments
    grid = grid_of(G, y, (LEVELS + 1, 1), step=1.0)
    moments = grid.moments
    sd = fine.scaled_variance.sqrt()
    torch.testing.assert_close(moments.scaled_mean / sd, fine.scaled_mean / sd, atol=1e-3,
                               rtol=0)
    torch.testing.assert_close(moments.scaled_variance, fine.scaled_variance, rtol=1e-3, atol=0)
    log_sd = fine.log_scale_covariance.diagonal().sqrt()
    torch.testing.assert_close(moments.log_scale_mean / log_sd, fine.log_scale_mean / log_sd,
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(moments.log_scale_covariance, fine.log_scale_covariance,
                               rtol=1e-3, atol=1e-3 * float(log_sd.min()) ** 2)
    n = 40_000
    theta, log_scale = grid.sample(n, torch.Generator().manual_seed(0))
    scaled = theta / grid.column_scales(log_scale)
    sd = moments.scaled_variance.sqrt()
    assert ((scaled.mean(0) - moments.scaled_mean).abs() / sd).max() < 4 / math.sqrt(n)
    assert (scaled.var(0) / moments.scaled_variance - 1).abs().max() < 4 * math.sqrt(2 / n)
    expected = moments.log_scale_covariance
    spread = ((expected.diagonal()[:, None] * expected.diagonal() + expected.square()) / n).sqrt()
    assert ((torch.cov(log_scale.T) - expected).abs() / spread).max() < 5
    assert ((log_scale.mean(0) - moments.log_scale_mean).abs()
            / expected.diagonal().sqrt()).max() < 4 / math.sqrt(n)


def test_too_many_scales_for_the_grid_are_refused():
    G, y = grouped_problem()
    column_scale = torch.tensor([-1, -1] + list(range(LEVELS + 1)))
    with pytest.raises(ValueError, match="the grid integrates 1 to 4 scales, got 7"):
        ScaleGridPosterior(G.T @ G, G.T @ y, y @ y, len(y), torch.zeros(8, dtype=F64),
                           column_scale, half_normal_log_prior)


# --- the estimators' method="exact" ---------------------------------------------------------
def regression_data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(n, 3, generator=gen, dtype=F64) * torch.tensor([1.0, 10.0, 0.1], dtype=F64)
    y = 2.0 + X @ torch.tensor([0.5, -0.05, 4.0], dtype=F64) + 0.7 * torch.randn(
        n, generator=gen, dtype=F64)
    return X, y


def test_exact_from_a_data_source_is_exact_in_memory(tmp_path):
    """The same posterior from a CSV read in a pass (its ``X^T X``, ``X^T y``, ``y^T y``):
    the coefficients' moments to 1e-8."""
    X, y = regression_data()
    path = tmp_path / "rows.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}).to_csv(path, index=False)
    memory = nb.BayesianLinearRegression(method="exact").fit(X, y)
    source = nb.BayesianLinearRegression(method="exact").fit(
        nb.data.CSV(path, x=["a", "b", "c"], y="y"))
    for name in ("intercept", "coef"):
        torch.testing.assert_close(source.posterior_.mean[name], memory.posterior_.mean[name],
                                   rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(source.posterior_.sd[name], memory.posterior_.sd[name],
                                   rtol=1e-8, atol=0)


def test_auto_is_exact_unless_vi_is_configured_or_the_scales_are_too_many():
    """Exact with and without group terms of up to four scales in all (noise included); VI
    where ``family`` or ``fit_options`` configure it (a short Adam run: only the choice is
    checked here) and past four scales (the rule alone: such a variational fit takes
    minutes)."""
    gen = np.random.default_rng(0)
    x = gen.normal(size=40)
    table = pd.DataFrame({"y": x + gen.normal(size=40), "x": x, "x2": x**2, "g": np.arange(40) % 4})
    short = {"family": "meanfield", "fit_options": {"solver": "adam", "max_steps": 20}}
    fits = [nb.BayesianLinearRegression.from_formula(formula, table, progress=False, **options)
            for formula, options in [("y ~ x + (1 | g)", {}), ("y ~ x + (x + x2 | g)", {}),
                                     ("y ~ x", {}), ("y ~ x + (1 | g)", short)]]
    assert [reg.posterior_.info.family == "exact" for reg in fits] == [True, True, True, False]
    assert auto_method("auto", None, 4) == "exact" and auto_method("auto", None, 5) == "vi"
    assert auto_method("fullrank", None, 2) == "vi" and auto_method("auto", {}, 2) == "vi"
    assert auto_method("auto", None, 2, 2000) == "exact" and auto_method("auto", None, 2, 2001) == "vi"


def test_small_blocks_are_factored_as_lapack_does():
    """The square root (q = 1) and the 2 x 2 formulas (q = 2) give torch's Cholesky factor
    and inverse to rounding, and flag a block that is not positive definite."""
    gen = torch.Generator().manual_seed(5)
    for q in (1, 2, 3):
        A = torch.randn(6, 4, q, q, generator=gen, dtype=F64)
        precision = A @ A.mT + 0.1 * torch.eye(q, dtype=F64)
        chol, inverse, failed = _factor_blocks(precision)
        torch.testing.assert_close(chol, torch.linalg.cholesky(precision))
        torch.testing.assert_close(inverse, torch.linalg.inv(precision))
        assert not failed.any()
        precision[0, 0] = -torch.eye(q, dtype=F64)
        assert _factor_blocks(precision)[2][0, 0] and not _factor_blocks(precision)[2][0, 1]


def test_eliminating_levels_of_a_varying_slope_is_the_dense_algebra():
    """``(1 + x | g)``: two columns and two scales per level, eliminated as 2 x 2 blocks,
    give the dense Cholesky's lattice and moments to rounding."""
    gen = torch.Generator().manual_seed(6)
    levels, rows = 4, 40
    x = torch.randn(rows, generator=gen, dtype=F64)
    g = torch.arange(rows) % levels
    y = 0.5 + x + torch.randn(levels, generator=gen, dtype=F64)[g] * (1 + 0.5 * x) + 0.5 * torch.randn(
        rows, generator=gen, dtype=F64)
    one_hot = torch.nn.functional.one_hot(g, levels).to(F64)
    varying = torch.stack([one_hot, one_hot * x[:, None]], 2).reshape(rows, 2 * levels)
    G = torch.cat([torch.ones(rows, 1, dtype=F64), x[:, None], varying], 1)
    fixed = torch.cat([PRIOR_SD.pow(-2), torch.zeros(2 * levels, dtype=F64)])
    column_scale = torch.tensor([-1, -1] + [0, 1] * levels)
    grids = [ScaleGridPosterior(G.T @ G, G.T @ y, y @ y, rows, fixed, column_scale,
                                half_normal_log_prior, blocked=blocked, n_joint=2)
             for blocked in ((levels, 2), (0, 1))]
    torch.testing.assert_close(grids[0].log_weight, grids[1].log_weight, rtol=0, atol=1e-9)
    for name in ("joint_mean", "joint_covariance", "mean", "variance", "scaled_mean",
                 "scaled_variance", "scale_mean", "scale_variance"):
        torch.testing.assert_close(getattr(grids[0].moments, name),
                                   getattr(grids[1].moments, name), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("formula, options", [
    ("y ~ x + (x | g)", {}),  # the noise learned: three scales
    ("y ~ x + (1 | h) + (1 | g)", {"noise_scale": 20.0}),  # h (more levels) eliminated last
])
def test_the_estimators_moments_are_the_grids_own_and_those_of_its_draws(formula, options,
                                                                          monkeypatch):
    """``posterior_.mean`` and ``sd`` of every parameter (the sds and effects on the user's
    scale included) come from the grid's moments, without drawing, and agree with 40,000
    draws of a lattice of step 0.25 (whose histogram is close to the posterior's): means
    within four Monte Carlo sds, sds within four of their own (``sqrt((kurtosis - 1) /
    4n)`` relative, the kurtosis estimated from the draws: the group sds are skewed)."""
    gen = np.random.default_rng(4)
    g, h = np.arange(120) % 6, np.arange(120) % 15
    x = gen.normal(size=120) * 10
    y = 300 + 2 * x + gen.normal(size=6)[g] * 40 + gen.normal(size=6)[g] * x + gen.normal(
        size=15)[h] * 30 + gen.normal(size=120) * 20
    table = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
    post = nb.BayesianLinearRegression.from_formula(formula, table, **options).posterior_
    mean, sd = post.mean, post.sd
    assert "_summary_draws" not in post.__dict__
    monkeypatch.setitem(scale_grid._STEPS, post.family.grid.n_scales, 0.25)
    fine = nb.BayesianLinearRegression.from_formula(formula, table, **options).posterior_
    n = 40_000
    for name, value in fine.sample(n, seed=1).items():
        value = value.double()
        centred = value - value.mean(0)
        spread = centred.square().mean(0).sqrt()
        kurtosis = centred.pow(4).mean(0) / spread.pow(4)
        assert ((mean[name].double() - value.mean(0)).abs() / spread).max() < 4 / math.sqrt(n), name
        assert ((sd[name].double() / spread - 1).abs() / ((kurtosis - 1) / (4 * n)).sqrt()
                ).max() < 4, name
