"""The demo's figure: what the seed's recipe learns against the exact posterior.

Three panels: (a) the learned sds by epoch, the recipe's against the fixed version's, with
the exact posterior sds as horizontal lines; (b) the slope's posterior density by method
(the exact one from its closed form); (c) the exact posterior predictive band over the
data, with the band the seed's recipe implies at its last epoch, each legend saying what
share of the data its band holds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.distributions import StudentT

from noisybayes.cli.demo import DemoResult
from noisybayes.reports.plots import draw_density, draw_predictive

__all__ = ["plot_demo"]

_COLORS = {"exact": "k", "nb.fit meanfield": "C0", "nb.fit fullrank": "C1", "MCMC": "C4"}
_Z94 = 1.880794  # the 97th percentile of N(0, 1): a central 94% interval is mean ± 1.88 sd


def _normal_pdf(grid: np.ndarray, loc: float, scale: float) -> np.ndarray:
    return np.exp(-0.5 * ((grid - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


def _exact_slope_t(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """``(loc, scale, dof)`` of the exact marginal of the slope under flat priors on
    (intercept, slope, sigma): Student-t with ``n - 3`` degrees of freedom, centred at least
    squares, scale ``sqrt(RSS / (n - 3) (X^T X)^{-1}_11)`` (sigma integrated out)."""
    design = np.column_stack([np.ones_like(x), x])
    gram = design.T @ design
    coef = np.linalg.solve(gram, design.T @ y)
    dof = x.shape[0] - 3
    rss = float(((y - design @ coef) ** 2).sum())
    return float(coef[1]), math.sqrt(rss / dof * np.linalg.inv(gram)[1, 1]), dof


def _exact_slope_density(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The density of :func:`_exact_slope_t` at ``grid``."""
    loc, scale, dof = _exact_slope_t(x, y)
    f64 = torch.float64
    t = StudentT(torch.tensor(float(dof), dtype=f64), torch.tensor(loc, dtype=f64),
                 torch.tensor(scale, dtype=f64))
    density = t.log_prob(torch.from_numpy(grid)).exp()
    return density.numpy()


def _coverage(x: np.ndarray, y: np.ndarray, grid: np.ndarray, lower: np.ndarray,
              upper: np.ndarray) -> float:
    """The fraction of the points ``(x, y)`` inside a band given on ``grid``."""
    order = np.argsort(grid)
    low = np.interp(x, grid[order], lower[order])
    high = np.interp(x, grid[order], upper[order])
    return float(((y >= low) & (y <= high)).mean())


def plot_demo(result: DemoResult) -> Figure:
    """The demo's three-panel figure (see the module docstring)."""
    fig = Figure(figsize=(17, 5.2), layout="constrained")
    ax_sd, ax_slope, ax_pred = fig.subplots(1, 3)
    c = result.claims
    epochs = np.array([s.epoch for s in result.seed_history])
    for history, name, color in (
        (result.seed_history, "seed recipe (MSE)", "C3"),
        (result.fixed_history, "seed fixed (ELBO)", "C2"),
    ):
        ax_sd.plot(epochs, [s.slope_scale for s in history], color=color, lw=1.8,
                   label=f"{name}: slope sd")
        ax_sd.plot(epochs, [s.intercept_scale for s in history], color=color, lw=1.2, ls="--",
                   label=f"{name}: intercept sd")
    marks = [s for s in result.seed_history if s.epoch in result.epochs]
    ax_sd.scatter([s.epoch for s in marks], [s.slope_scale for s in marks], color="C3", s=18,
                  zorder=3)
    ax_sd.axhline(c["exact_slope_sd"], color="k", lw=1.2, label="exact: slope sd")
    ax_sd.axhline(c["exact_intercept_sd"], color="k", lw=1.0, ls="--", label="exact: intercept sd")
    ax_sd.set_yscale("log")
    ax_sd.set_xlabel("epoch")
    ax_sd.set_ylabel("learned sd")
    ax_sd.set_title("(a) the recipe's sds shrink; the ELBO's converge")
    ax_sd.legend(fontsize=7.5, loc="lower left")

    centre, scale, dof = _exact_slope_t(result.x, result.y)
    spread = scale * math.sqrt(dof / (dof - 2))
    grid = np.linspace(centre - 6 * spread, centre + 6 * spread, 400)
    exact_density = _exact_slope_density(result.x, result.y, grid)
    ax_slope.plot(grid, exact_density, color=_COLORS["exact"], lw=1.8,
                  label="exact (Student-t, closed form)")
    peak = float(exact_density.max())
    for name, draws in result.slope_draws.items():
        draw_density(ax_slope, draws, label=name, color=_COLORS.get(name, "C4"),
                     hdi_prob=None, grid=grid, mark_mean=False)
    for snap, name, color, ls in (
        (result.fixed_history[-1], "seed fixed (ELBO)", "C2", "-."),
        (result.seed_history[-1], "seed recipe (MSE)", "C3", ":"),
    ):
        ax_slope.plot(grid, _normal_pdf(grid, snap.slope_loc, snap.slope_scale), color=color,
                      ls=ls, lw=1.8, label=f"{name}, epoch {snap.epoch}: sd {snap.slope_scale:.2g}")
    ax_slope.set_ylim(0, 1.6 * peak)
    ax_slope.set_xlabel("slope")
    ax_slope.set_yticks([])
    ax_slope.set_title("(b) posterior density of the slope")
    ax_slope.legend(fontsize=7.5, loc="upper right")

    draw_predictive(ax_pred, result.x, result.y, result.grid, result.prediction)
    exact_covers = _coverage(result.x, result.y, result.grid,
                             result.prediction.lower.double().numpy(),
                             result.prediction.upper.double().numpy())
    last = result.seed_history[-1]
    mean = last.intercept_loc + last.slope_loc * result.grid
    # Var[y_hat] = slope_sd^2 x^2 + intercept_sd^2 + noise_sd^2 (independent injections)
    sd = np.sqrt(
        last.slope_scale**2 * result.grid**2 + last.intercept_scale**2 + last.noise_scale**2
    )
    recipe_covers = _coverage(result.x, result.y, result.grid, mean - _Z94 * sd,
                              mean + _Z94 * sd)
    for sign in (-1, 1):
        ax_pred.plot(result.grid, mean + sign * _Z94 * sd, color="C3", ls=":", lw=1.6,
                     label=(f"seed recipe, epoch {last.epoch}: 94% band, holds "
                            f"{recipe_covers:.0%} of the data") if sign > 0 else None)
    ax_pred.plot([], [], " ", label=f"exact 94% predictive interval holds {exact_covers:.0%}")
    ax_pred.set_xlabel("x")
    ax_pred.set_ylabel("y")
    ax_pred.set_title("(c) exact posterior predictive over the data")
    ax_pred.legend(fontsize=7.5, loc="upper left")
    return fig
