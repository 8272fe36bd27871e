"""Figures of a posterior: marginal densities, pairwise draws, the predictive band, the trace.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot``, so nothing
needs a display and no global state changes; save it with ``fig.savefig("out.png")``.
Densities are Gaussian kernel estimates from posterior draws (Silverman's bandwidth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from noisybayes._checks import name_list
from noisybayes.infer.posterior import GaussianPosterior, Posterior
from noisybayes.infer.prediction import Prediction
from noisybayes.math.intervals import hdi
from noisybayes.reports.forest import draw_forest

if TYPE_CHECKING:
    from noisybayes.infer.calibration import CalibrationReport

__all__ = [
    "FOREST_ABOVE",
    "draw_density",
    "draw_predictive",
    "draw_trace",
    "kde",
    "plot_calibration",
    "plot_fit",
    "plot_forest",
    "plot_pairs",
    "plot_posterior",
    "plot_predictive",
    "plot_trace",
    "posterior_draws",
]


FOREST_ABOVE = 6  # vector parameters with more elements are drawn as a forest plot


def kde(draws: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density estimate at ``grid`` from 1-D ``draws``:
    ``p(t) = mean_i N(t; draw_i, h^2)`` with ``h = 0.9 min(sd, IQR / 1.34) n^(-1/5)``
    (Silverman 1986, eq. 3.31)."""
    draws = np.asarray(draws, dtype=np.float64)
    iqr = np.subtract(*np.percentile(draws, [75, 25]))
    spread = min(draws.std(), iqr / 1.34) or draws.std() or 1.0
    h = 0.9 * spread * draws.size ** (-0.2)
    z = (grid[:, None] - draws[None, :]) / h
    return np.exp(-0.5 * z**2).mean(axis=1) / (h * np.sqrt(2 * np.pi))


def _posterior_of(obj: Any) -> tuple[GaussianPosterior, dict[str, str]]:
    """The ``GaussianPosterior`` of ``obj`` (itself or an estimator's ``posterior_``) and
    row names."""
    post = obj if isinstance(obj, Posterior) else getattr(obj, "posterior_", None)
    if not isinstance(post, Posterior):
        raise TypeError(
            f"obj must be an nb.Posterior or a fitted estimator, got {type(obj).__name__}"
        )
    if not isinstance(post, GaussianPosterior):
        raise TypeError(
            "obj must hold a posterior of named parameters (nb.fit, the regression "
            f"estimators), got a {type(post).__name__}: a network has no parameter table to plot"
        )
    if post is obj:
        return post, {}
    features = getattr(obj, "feature_names_in_", None)
    features = [] if features is None else list(features)
    return post, {f"coef[{i}]": str(n) for i, n in enumerate(features)}


def _draws_by_parameter(
    obj: Any, n_draws: int, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """``{parameter: {label: (n_draws,)}}``: the draws of every scalar, grouped by the
    parameter they belong to, in the order of ``summary()``."""
    post, rename = _posterior_of(obj)
    draws = post.sample(n_draws, seed=seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in post.layout.names:
        flat = draws[name].reshape(n_draws, -1).double().numpy()
        scalar = draws[name].dim() == 1
        labels = [name] if scalar else [f"{name}[{i}]" for i in range(flat.shape[1])]
        out[name] = {rename.get(lab, lab): flat[:, j] for j, lab in enumerate(labels)}
    return out


def posterior_draws(obj: Any, n_draws: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    """``n_draws`` draws of every scalar parameter, ``{label: (n_draws,)}``, in the order of
    ``summary()``; ``obj`` is an ``nb.Posterior`` or a fitted estimator."""
    grouped = _draws_by_parameter(obj, n_draws, seed)
    return {label: v for block in grouped.values() for label, v in block.items()}


def draw_density(
    ax: Axes,
    draws: np.ndarray,
    *,
    label: str | None = None,
    color: str | None = None,
    hdi_prob: float | None = 0.94,
    grid: np.ndarray | None = None,
    mark_mean: bool = True,
) -> None:
    """Draw the density of 1-D ``draws`` on ``ax``; shade the HDI of ``hdi_prob`` (``None``:
    no shading) and, with ``mark_mean``, dash the mean."""
    if grid is None:
        low, high = np.percentile(draws, [0.1, 99.9])
        pad = 0.15 * (high - low or 1.0)
        grid = np.linspace(low - pad, high + pad, 256)
    dens = kde(draws, grid)
    (line,) = ax.plot(grid, dens, color=color, label=label, lw=1.8)
    if hdi_prob is not None:
        lo, hi = (float(v) for v in hdi(torch.as_tensor(draws), hdi_prob))
        inside = (grid >= lo) & (grid <= hi)
        ax.fill_between(grid[inside], dens[inside], color=line.get_color(), alpha=0.25, lw=0)
    if mark_mean:
        ax.axvline(float(np.mean(draws)), color=line.get_color(), lw=1.0, ls="--")
    ax.set_ylim(bottom=0)


def plot_posterior(
    obj: Any,
    *,
    names: Sequence[str] | None = None,
    hdi_prob: float = 0.94,
    n_draws: int = 4000,
    seed: int = 0,
) -> Figure:
    """Marginal posterior densities, one panel per scalar parameter, with the
    ``hdi_prob`` highest-density interval shaded and the mean dashed."""
    draws = posterior_draws(obj, n_draws, seed)
    labels = list(draws) if names is None else _check_names(names, draws)
    cols = min(3, len(labels))
    rows = -(-len(labels) // cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows), layout="constrained")
    for k, label in enumerate(labels):
        ax = fig.add_subplot(rows, cols, k + 1)
        draw_density(ax, draws[label], hdi_prob=hdi_prob, color="C0")
        ax.set_title(label)
        ax.set_yticks([])
    fig.suptitle(f"posterior marginals (shaded: {hdi_prob:.0%} HDI, dashed: mean)")
    return fig


def plot_forest(
    obj: Any,
    *,
    names: Sequence[str] | None = None,
    hdi_prob: float = 0.94,
    n_draws: int = 4000,
    seed: int = 0,
) -> Figure:
    """A forest plot of the scalar parameters (``names``, default all): one row each, on
    one axis, with the mean, the 50% and the ``hdi_prob`` highest-density intervals."""
    draws = posterior_draws(obj, n_draws, seed)
    labels = list(draws) if names is None else _check_names(names, draws)
    fig = Figure(figsize=(6.5, 1.0 + 0.32 * len(labels)), layout="constrained")
    draw_forest(fig.add_subplot(), {lab: draws[lab] for lab in labels}, hdi_prob=hdi_prob)
    return fig


def _check_names(names: Sequence[str], draws: Mapping[str, np.ndarray]) -> list[str]:
    unknown = [n for n in names if n not in draws]
    if unknown:
        raise ValueError(
            f"names must be parameters of the posterior ({name_list(draws)}), got "
            f"{name_list(unknown)}"
        )
    return list(names)


def plot_pairs(
    obj: Any, *, names: Sequence[str] | None = None, n_draws: int = 1000, seed: int = 0
) -> Figure:
    """Pairwise scatter of posterior draws below the diagonal, marginal histograms on it,
    and the correlation of each pair in its panel's title."""
    draws = posterior_draws(obj, n_draws, seed)
    labels = list(draws) if names is None else _check_names(names, draws)
    k = len(labels)
    fig = Figure(figsize=(2.4 * k + 0.6, 2.4 * k + 0.4), layout="constrained")
    for i, row in enumerate(labels):
        for j, col in enumerate(labels[: i + 1]):
            ax = fig.add_subplot(k, k, i * k + j + 1)
            if i == j:
                ax.hist(draws[row], bins=40, color="C0", alpha=0.7)
                ax.set_yticks([])
            else:
                ax.scatter(draws[col], draws[row], s=3, alpha=0.3, color="C0", lw=0)
                r = float(np.corrcoef(draws[col], draws[row])[0, 1])
                ax.set_title(f"r = {r:+.2f}", fontsize=9)
            if i == k - 1:
                ax.set_xlabel(col)
            if j == 0 and i != j:
                ax.set_ylabel(row)
    fig.suptitle("posterior draws, pairwise")
    return fig


def draw_predictive(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray | None,
    x_new: np.ndarray,
    prediction: Prediction,
) -> None:
    """On ``ax``: the data ``(x, y)``, the predictive mean at ``x_new``, the credible band of
    the mean and the wider predictive band of a new observation."""
    order = np.argsort(x_new)
    xs = x_new[order]
    pick = lambda t: t.detach().double().numpy()[order]  # noqa: E731
    if y is not None:
        ax.scatter(x, y, s=6, color="0.35", alpha=0.5, lw=0, label="data")
    level = f"{prediction.level:.0%}"
    ax.fill_between(xs, pick(prediction.lower), pick(prediction.upper), color="C0", alpha=0.18,
                    lw=0, label=f"{level} predictive interval")
    ax.fill_between(xs, pick(prediction.mean_lower), pick(prediction.mean_upper), color="C0",
                    alpha=0.45, lw=0, label=f"{level} interval of the mean")
    ax.plot(xs, pick(prediction.mean), color="C0", lw=1.8, label="predictive mean")


def plot_predictive(
    x: Any, y: Any, prediction: Prediction, *, x_new: Any = None, xlabel: str = "x",
    ylabel: str = "y",
) -> Figure:
    """The predictive band over the data: ``prediction`` is at ``x_new`` (default ``x``), a
    1-D predictor of the same length as ``prediction.mean``."""
    x_arr = np.asarray(x, dtype=np.float64).reshape(-1)
    y_arr = None if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
    new = x_arr if x_new is None else np.asarray(x_new, dtype=np.float64).reshape(-1)
    if new.shape[0] != prediction.mean.shape[0]:
        raise ValueError(
            f"x_new must have one value per prediction ({prediction.mean.shape[0]}), "
            f"got {new.shape[0]}"
        )
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    draw_predictive(ax, x_arr, y_arr, new, prediction)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("posterior predictive")
    return fig


def draw_trace(ax: Axes, post: GaussianPosterior) -> None:
    """On ``ax``: the loss (``-ELBO`` per datum) at every step, with its running mean over
    2% of the run."""
    trace = post.info.loss_trace.double().numpy()
    if trace.size == 0:
        ax.text(0.5, 0.5, f"no optimisation: {post.info.reason}", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    steps = np.arange(1, trace.size + 1)
    ax.plot(steps, trace, color="C0", lw=0.6, alpha=0.5, label="per step")
    width = max(1, trace.size // 50)
    smooth = np.convolve(trace, np.ones(width) / width, mode="valid")
    ax.plot(steps[width - 1 :], smooth, color="C1", lw=1.8, label=f"mean of {width} steps")
    low, high = trace.min(), np.percentile(trace, 95)
    ax.set_ylim(low - 0.05 * abs(high - low), high + 0.1 * abs(high - low))
    ax.set_xlabel("step")
    ax.set_ylabel("loss = -ELBO / datum")
    ax.set_title(f"{post.info.family}: {post.info.reason}", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)


def plot_trace(obj: Any) -> Figure:
    """The loss per datum at every optimisation step (``post.info.loss_trace``)."""
    post, _ = _posterior_of(obj)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    draw_trace(fig.add_subplot(), post)
    return fig


def _density_grid(fig: Any, draws: Mapping[str, np.ndarray], hdi_prob: float) -> None:
    """One density panel per label in ``fig`` (a figure or subfigure), four to a row."""
    cols = min(4, len(draws))
    rows = -(-len(draws) // cols)
    for k, (label, values) in enumerate(draws.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        draw_density(ax, values, hdi_prob=hdi_prob, color="C0")
        ax.set_title(label, fontsize=10)
        ax.set_yticks([])
    fig.suptitle(f"posterior marginals (shaded: {hdi_prob:.0%} HDI, dashed: mean)", fontsize=11)


def plot_fit(
    obj: Any,
    *,
    x: Any = None,
    y: Any = None,
    prediction: Prediction | None = None,
    x_new: Any = None,
    hdi_prob: float = 0.94,
    xlabel: str = "x",
    ylabel: str = "y",
) -> Figure:
    """A fit at a glance, titled with how it ended: marginal densities of the scalar
    parameters and short vectors; a forest plot of each vector parameter with more than
    ``FOREST_ABOVE`` elements (many coefficients on one axis); with a 1-D predictor ``x``,
    ``y`` and the ``prediction`` at ``x_new``, the predictive band; and the loss trace only
    when the optimisation did not converge (a converged trace is flat and says nothing)."""
    post, _ = _posterior_of(obj)
    grouped = _draws_by_parameter(obj, 4000, 0)
    forests = {name: block for name, block in grouped.items() if len(block) > FOREST_ABOVE}
    densities = {
        label: values for name, block in grouped.items() if name not in forests
        for label, values in block.items()
    }
    with_band = prediction is not None and x is not None
    with_trace = not post.info.converged and post.info.loss_trace.numel() > 0
    heights = []
    if densities:
        heights.append(2.6 * -(-len(densities) // 4) + 0.4)
    heights.extend(1.0 + 0.3 * len(block) for block in forests.values())
    if with_band or with_trace:
        heights.append(3.8)
    cols = min(4, max(1, len(densities)))
    fig = Figure(figsize=(max(9.0, 3.6 * cols), sum(heights) + 0.4), layout="constrained")
    grid: Any = fig.subfigures(len(heights), 1, squeeze=False, height_ratios=heights)
    sections = iter(grid[:, 0])
    if densities:
        _density_grid(next(sections), densities, hdi_prob)
    for name, block in forests.items():
        section = next(sections)
        draw_forest(section.add_subplot(), block, hdi_prob=hdi_prob)
        section.suptitle(f"{name}: {len(block)} coefficients", fontsize=11)
    if with_band or with_trace:
        axes = next(sections).subplots(1, int(with_band) + int(with_trace), squeeze=False)[0]
        if with_band and prediction is not None:
            x_arr = np.asarray(x, dtype=np.float64).reshape(-1)
            y_arr = None if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
            new = x_arr if x_new is None else np.asarray(x_new, dtype=np.float64).reshape(-1)
            draw_predictive(axes[0], x_arr, y_arr, new, prediction)
            axes[0].set_xlabel(xlabel)
            axes[0].set_ylabel(ylabel)
            axes[0].legend(loc="best", fontsize=7)
        if with_trace:
            draw_trace(axes[-1], post)
    status = "converged" if post.info.converged else "did NOT converge"
    fig.suptitle(f"{post.info.family} fit, {status}: {post.info.reason}", fontsize=9)
    return fig


def plot_calibration(report: CalibrationReport, *, bins: int = 10) -> Figure:
    """A reliability diagram: observed against nominal coverage of the central predictive
    intervals (the diagonal is perfect calibration), beside the histogram of PIT values
    (flat when calibrated; a U shape means too narrow, a hump too wide)."""
    from noisybayes.infer.calibration import CalibrationReport

    if not isinstance(report, CalibrationReport):
        raise TypeError(f"report must be an nb.CalibrationReport, got {type(report).__name__}")
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    nominal = np.asarray(report.levels)
    left.plot([0, 1], [0, 1], color="0.6", lw=1.0, ls="--", label="calibrated")
    left.plot(nominal, np.asarray(report.coverage), "o-", color="C0", label="observed")
    band = 2 * np.sqrt(nominal * (1 - nominal) / report.n_data)
    left.fill_between(nominal, nominal - band, nominal + band, color="0.6", alpha=0.2, lw=0,
                      label="±2 binomial sd")
    left.set_xlabel("nominal coverage")
    left.set_ylabel("observed coverage")
    left.set_title("central predictive intervals")
    left.legend(loc="upper left", fontsize=8)
    right.hist(report.pit.detach().double().cpu().numpy(), bins=bins, range=(0, 1),
               density=True, color="C0", alpha=0.7)
    right.axhline(1.0, color="0.6", lw=1.0, ls="--")
    right.set_xlabel("PIT")
    right.set_title(f"PIT (KS distance {report.pit_ks:.3f})")
    fig.suptitle(f"calibration on {report.n_data} held-out rows, CRPS {report.mean_crps:.3g}")
    return fig
