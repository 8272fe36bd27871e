"""A forest plot: one row per scalar parameter on one shared axis, its mean and two
highest-density intervals, so that many coefficients read at a glance (where a grid of
density panels, each with its own axis, has to be read panel by panel).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.axes import Axes

from noisybayes.math.intervals import hdi

__all__ = ["draw_forest"]


def draw_forest(
    ax: Axes,
    draws: Mapping[str, np.ndarray],
    *,
    hdi_prob: float = 0.94,
    inner_prob: float = 0.5,
) -> None:
    """On ``ax``: for each ``label -> (n,)`` draws, top to bottom in the mapping's order, the
    ``hdi_prob`` HDI as a thin line, the ``inner_prob`` HDI as a thick one and the mean as a
    dot; a dashed line at zero when zero is in range."""
    labels = list(draws)
    rows = np.arange(len(labels))[::-1]
    for row, label in zip(rows, labels, strict=True):
        values = torch.as_tensor(np.asarray(draws[label], dtype=np.float64))
        low, high = (float(v) for v in hdi(values, hdi_prob))
        inner_low, inner_high = (float(v) for v in hdi(values, inner_prob))
        ax.hlines(row, low, high, color="C0", lw=1.2)
        ax.hlines(row, inner_low, inner_high, color="C0", lw=4.5)
        ax.plot(float(values.mean()), row, "o", color="white", mec="C0", mew=1.5, ms=5.5)
    ax.set_yticks(rows, labels)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    left, right = ax.get_xlim()
    if left < 0 < right:
        ax.axvline(0.0, color="0.4", lw=0.9, ls="--", zorder=1)
    ax.grid(axis="x", color="0.92", lw=0.8)
    ax.set_axisbelow(True)
    ax.set_title(
        f"mean (dot), {inner_prob:.0%} HDI (thick), {hdi_prob:.0%} HDI (thin)", fontsize=9
    )
