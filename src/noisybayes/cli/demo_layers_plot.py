"""The figure of ``noisybayes demo --layers``: one panel per method, the data, the true
function, the predictive mean and its 94% band, the data-free middle shaded."""

from __future__ import annotations

from matplotlib.figure import Figure

from noisybayes.cli.demo_layers import GAP, LayersDemoResult

__all__ = ["plot_layers_demo"]


def plot_layers_demo(result: LayersDemoResult) -> Figure:
    """A row of panels, one per method, sharing both axes."""
    fig = Figure(figsize=(4.2 * len(result.fits), 4.2), layout="constrained")
    axes = fig.subplots(1, len(result.fits), sharex=True, sharey=True)
    for k, (ax, fit) in enumerate(zip(axes, result.fits, strict=True)):
        ax.axvspan(-GAP, GAP, color="0.92", lw=0, label="no data")
        ax.scatter(result.x, result.y, s=6, color="0.45", label="data")
        ax.plot(result.grid, result.truth, color="k", lw=1.0, ls="--", label="true function")
        ax.fill_between(result.grid, fit.lower, fit.upper, color=f"C{k}", alpha=0.25,
                        label="94% predictive band")
        ax.plot(result.grid, fit.mean, color=f"C{k}", lw=1.8, label="predictive mean")
        ax.set_title(f"{fit.method}\nRMSE {fit.rmse:.3f}, band x{fit.gap_widening:.2f} "
                     "in the gap", fontsize=10)
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[0].legend(loc="upper left", fontsize=8)
    return fig
