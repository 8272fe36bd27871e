"""Figures render headless, are written and are not blank; the density estimate is right."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import noisybayes as nb
from noisybayes.math.intervals import hdi
from noisybayes.reports.forest import draw_forest
from noisybayes.reports.plots import (
    kde,
    plot_fit,
    plot_forest,
    plot_pairs,
    plot_posterior,
    plot_predictive,
    plot_trace,
)

FLAT = {"prior_scale": None, "noise_prior": None}


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(100, generator=gen, dtype=torch.float64) * 10
    y = 1.0 + 0.5 * x + torch.randn(100, generator=gen, dtype=torch.float64)
    return x, y


@pytest.fixture(scope="module")
def exact(data) -> nb.BayesianLinearRegression:
    x, y = data
    return nb.BayesianLinearRegression(method="exact", **FLAT).fit(x[:, None], y)


@pytest.fixture(scope="module")
def vi(data) -> nb.BayesianLinearRegression:
    x, y = data
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return nb.BayesianLinearRegression(seed=0, fit_options={"max_steps": 600}).fit(x[:, None], y)
    finally:
        torch.set_num_threads(before)


def ink(path: Path) -> float:
    """The fraction of pixels that are not near-white."""
    pixels = matplotlib.image.imread(path)[..., :3]
    return float((pixels < 0.9).any(axis=-1).mean())


def check_written(fig, path: Path, min_bytes: int = 15_000, min_ink: float = 0.02) -> None:
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > min_bytes
    assert ink(path) > min_ink


def test_posterior_marginals(exact, tmp_path):
    fig = plot_posterior(exact)
    assert [ax.get_title() for ax in fig.axes] == ["intercept", "coef[0]", "sigma"]
    check_written(fig, tmp_path / "posterior.png")


def test_pairs_show_the_correlation(exact, tmp_path):
    """x in [0, 10] is uncentred: the intercept-slope correlation is -mean(x)/rms(x)."""
    fig = plot_pairs(exact.posterior_, n_draws=2000)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    x = exact.posterior_.model.x_mean
    assert len(titles) == 3
    r = float(titles[0].split("=")[1])
    rms = math.sqrt(float(x**2 + exact.posterior_.model.x_scale**2))
    assert r == pytest.approx(-float(x) / rms, abs=0.05)  # 2000 draws: sd of r ~ (1-r^2)/45
    check_written(fig, tmp_path / "pairs.png")


def test_predictive_band(exact, data, tmp_path):
    x, y = data
    grid = torch.linspace(-1, 11, 50, dtype=torch.float64)
    fig = plot_predictive(x, y, exact.predict_distribution(grid[:, None]), x_new=grid)
    check_written(fig, tmp_path / "predictive.png")
    with pytest.raises(ValueError) as info:
        plot_predictive(x, y, exact.predict_distribution(grid[:, None]))
    assert str(info.value) == "x_new must have one value per prediction (50), got 100"


def test_trace_of_a_fit_and_of_a_closed_form(vi, exact, tmp_path):
    check_written(plot_trace(vi), tmp_path / "trace.png")
    fig = plot_trace(exact)
    assert fig.axes[0].texts[0].get_text() == "no optimisation: closed form"


def test_fit_overview(vi, data, tmp_path):
    x, y = data
    grid = torch.linspace(0, 10, 40, dtype=torch.float64)
    fig = plot_fit(vi, x=x, y=y, prediction=vi.predict_distribution(grid[:, None]), x_new=grid)
    check_written(fig, tmp_path / "fit.png", min_bytes=40_000)


def test_plot_errors(exact):
    with pytest.raises(TypeError) as info:
        plot_posterior(object())
    assert str(info.value) == "obj must be an nb.Posterior or a fitted estimator, got object"
    with pytest.raises(ValueError) as info:
        plot_posterior(exact, names=["slope"])
    assert str(info.value) == (
        "names must be parameters of the posterior (intercept, coef[0], sigma), got slope"
    )


def test_kde_is_the_normal_convolved_with_its_kernel():
    """For N(0, 1) draws the estimate's mean is the N(0, 1 + h^2) density; its sd at t is
    about sqrt(p(t) / (n h 2 sqrt(pi))) <= 0.012 for n = 5,000: tolerance 0.05 (4 sd)."""
    gen = np.random.default_rng(0)
    draws = gen.standard_normal(5_000)
    grid = np.linspace(-3, 3, 61)
    spread = min(draws.std(), np.subtract(*np.percentile(draws, [75, 25])) / 1.34)
    h = 0.9 * spread * draws.size ** -0.2
    s2 = 1 + h**2
    expected = np.exp(-0.5 * grid**2 / s2) / np.sqrt(2 * np.pi * s2)
    np.testing.assert_allclose(kde(draws, grid), expected, atol=0.05)
    wide = np.linspace(-8, 8, 801)
    assert np.trapezoid(kde(draws, wide), wide) == pytest.approx(1.0, abs=1e-3)


def test_forest_rows_show_the_mean_and_both_intervals():
    """Row k from the top is the k-th label; its thin line is the 94% HDI, its thick line
    the 50% HDI and its dot the mean of the draws."""
    rng = np.random.default_rng(0)
    draws = {"a": rng.normal(0.0, 1.0, 4000), "b": rng.normal(5.0, 2.0, 4000)}
    ax = Figure().add_subplot()
    draw_forest(ax, draws)
    rows = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}
    assert rows["a"] > rows["b"]
    thin, thick = ax.collections[2].get_segments()[0], ax.collections[3].get_segments()[0]
    low, high = hdi(torch.from_numpy(draws["b"]), 0.94)
    inner_low, inner_high = hdi(torch.from_numpy(draws["b"]), 0.5)
    np.testing.assert_allclose(thin[:, 0], [float(low), float(high)])
    np.testing.assert_allclose(thick[:, 0], [float(inner_low), float(inner_high)])
    assert thin[0, 1] == rows["b"]
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [draws["b"].mean()])


def test_fit_overview_draws_many_coefficients_as_a_forest_and_a_trace_only_when_it_helps(
    tmp_path,
):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=gen, dtype=torch.float64)
    y = X @ torch.arange(8, dtype=torch.float64) + torch.randn(200, generator=gen,
                                                               dtype=torch.float64)
    names = [f"f{i}" for i in range(8)]
    reg = nb.BayesianLinearRegression(method="vi", seed=0).fit(
        pd.DataFrame(X.numpy(), columns=names), y)
    fig = plot_fit(reg)
    forest = [ax for ax in fig.axes if [t.get_text() for t in ax.get_yticklabels()] == names]
    assert len(forest) == 1  # the coefficients, top to bottom; intercept and sigma as densities
    assert [ax.get_title() for ax in fig.axes if ax is not forest[0]] == ["intercept", "sigma"]
    check_written(fig, tmp_path / "forest.png", min_bytes=30_000)
    chosen = plot_forest(reg, names=["f7", "f0"])
    assert [t.get_text() for t in chosen.axes[0].get_yticklabels()] == ["f7", "f0"]

    post = reg.posterior_
    stopped = nb.GaussianPosterior(post.model, post.layout, post.family,
                                   replace(post.info, converged=False), post.data)
    assert post.info.converged and post.info.loss_trace.numel() > 0
    labels = [ax.get_ylabel() for ax in plot_fit(stopped).axes]
    assert labels.count("loss = -ELBO / datum") == 1
    assert "loss = -ELBO / datum" not in [ax.get_ylabel() for ax in fig.axes]
