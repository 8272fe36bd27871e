"""``nb.compare``: a posterior against reference draws, with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import Normal

import noisybayes as nb
from noisybayes.infer.diagnostics import _wasserstein_1
from noisybayes.infer.posterior import FitInfo, GaussianPosterior
from noisybayes.math.families import MeanField
from noisybayes.model.layout import ParamLayout


class Two(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(None, shape=(2,))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, 1.0)


def _posterior(loc, scale) -> GaussianPosterior:
    """q = N(loc, diag(scale^2)) over ``beta``."""
    model = Two()
    family = MeanField(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale))
    family.requires_grad_(False)
    info = FitInfo("meanfield", 0, True, "test", torch.zeros(0), 1, 1, 0, 0.0, True, True)
    return GaussianPosterior(model, ParamLayout(model), family, info)


def _normal_quantiles(mean: float, sd: float, n: int = 20_000) -> np.ndarray:
    """Draws of N(mean, sd) as evenly spaced quantiles (no Monte Carlo error to speak of)."""
    from statistics import NormalDist

    dist = NormalDist(mean, sd)
    return np.array([dist.inv_cdf((i + 0.5) / n) for i in range(n)])


def test_known_answers():
    """q = N((1, 0), diag(2^2, 1)); reference N(0.5, 2) and N(0, 0.5): z = 0.25 and 0,
    sd ratios 1 and 2. W1 between normals is |shift| for equal sds (0.5) and
    |sd_1 - sd_2| sqrt(2/pi) for equal means (0.399). q's 10,000 draws give W1 an error of
    about sd / sqrt(10,000) = 0.02; 0.05 allows 2.5 of that."""
    post = _posterior([1.0, 0.0], [2.0, 1.0])
    draws = {"beta[0]": _normal_quantiles(0.5, 2.0), "beta[1]": _normal_quantiles(0.0, 0.5)}
    table = nb.compare(post, draws)
    assert list(table.index) == ["beta[0]", "beta[1]"]
    np.testing.assert_allclose(table["z_mean"], [0.25, 0.0], atol=2e-3)
    np.testing.assert_allclose(table["sd_ratio"], [1.0, 2.0], rtol=2e-3)
    np.testing.assert_allclose(table["wasserstein"], [0.5, 0.5 * np.sqrt(2 / np.pi)], atol=0.05)
    same = nb.compare(post, pd.DataFrame(draws))
    pd.testing.assert_frame_equal(table, same)


def test_wasserstein_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.standard_t(3, size=517) + 0.3
    assert _wasserstein_1(a, b) == pytest.approx(scipy_stats.wasserstein_distance(a, b), 1e-12)


def test_errors_name_the_columns():
    post = _posterior([0.0, 0.0], [1.0, 1.0])
    good = np.arange(5.0)
    with pytest.raises(
        ValueError, match=r"got unknown \['beta\[2\]'\] and missing \['beta\[1\]'\]"
    ):
        nb.compare(post, {"beta[0]": good, "beta[2]": good})
    with pytest.raises(ValueError, match=r"at least 2 distinct finite values .* \['beta\[1\]'\]"):
        nb.compare(post, {"beta[0]": good, "beta[1]": [1.0]})
    with pytest.raises(TypeError, match="draws must be a dict of name -> array or a pandas"):
        nb.compare(post, [good, good])
