"""PSIS-corrected moments and intervals (``infer/reweighting.py``, weighted ``hdi``) and the
default summaries that use them."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import InverseGamma, Normal

import noisybayes as nb
from noisybayes.infer.reweighting import ImportanceDraws
from noisybayes.math.intervals import hdi


def _weighted_normal(mean: float, sd: float, n: int = 20_000) -> ImportanceDraws:
    """Draws of ``q = N(0, 1)`` weighted towards ``p = N(mean, sd^2)``, ``sd < 1``: the ratio
    ``p / q`` is bounded, so its tail is light (k < 0.5)."""
    theta = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target, proposal = Normal(mean, sd), Normal(0.0, 1.0)
    log_ratios = target.log_prob(theta[:, 0]) - proposal.log_prob(theta[:, 0])
    return ImportanceDraws.from_ratios(theta, log_ratios)


def test_uniform_weights_give_the_exact_moments_of_q():
    """Equal ratios: the difference form returns ``q``'s moments to rounding, not their
    Monte Carlo estimate from the draws."""
    theta = torch.randn(500, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    draws = ImportanceDraws.from_ratios(theta, torch.zeros(500, dtype=torch.float64))
    q_mean, q_sd = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 2.0, 1.0])
    mean, sd = draws.moments(theta, (q_mean.double(), q_sd.double()))
    torch.testing.assert_close(mean, q_mean.double(), rtol=0, atol=1e-12)
    torch.testing.assert_close(sd, q_sd.double(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("exact_q", [True, False])
def test_weights_move_the_moments_to_the_target(exact_q):
    """``q = N(0, 1)`` reweighted to ``N(0.3, 0.8^2)``; with and without ``q``'s exact
    moments. Monte Carlo sds of the weighted moments: ``0.8 / sqrt(ESS)`` for the mean,
    ``1 / sqrt(2 ESS)`` relative for the sd; four of them. The difference form's sd is
    noisier than that derivation says (its error measured 0.17-0.94 of the bound over
    seeds 0-4, the weighted form's 0.02-0.38): the bound is tight there, not wide."""
    draws = _weighted_normal(0.3, 0.8)
    ess = draws.effective_draws
    assert draws.khat < 0.5 and ess > 10_000
    q_moments = (torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    mean, sd = draws.moments(draws.theta, q_moments if exact_q else None)
    assert abs(float(mean) - 0.3) < 4 * 0.8 / math.sqrt(ess)
    assert abs(float(sd) / 0.8 - 1) < 4 / math.sqrt(2 * ess)


def test_weighted_hdi_is_the_target_interval():
    """The 94% HDI of ``N(0.3, 0.8^2)`` is ``0.3 -+ 1.8808 x 0.8``. An endpoint's Monte Carlo
    sd is about ``sqrt(0.03 x 0.97) / (phi(1.88) / 0.8) / sqrt(ESS)`` = ``2.0 / sqrt(ESS)``;
    four of them."""
    draws = _weighted_normal(0.3, 0.8)
    low, high = hdi(draws.theta, 0.94, draws.weights)
    tolerance = 4 * 2.0 / math.sqrt(draws.effective_draws)
    assert abs(float(low) - (0.3 - 1.8808 * 0.8)) < tolerance
    assert abs(float(high) - (0.3 + 1.8808 * 0.8)) < tolerance


@pytest.mark.parametrize("seed", range(5))
def test_weighted_hdi_is_the_shortest_interval_holding_the_mass(seed):
    """Against a search over every pair of sorted draws (40 draws, random weights, ties)."""
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, 25, (40, 1), generator=g).double()
    weights = torch.rand(40, generator=g, dtype=torch.float64)
    weights = weights / weights.sum()
    low, high = hdi(draws, 0.8, weights)
    values, order = draws[:, 0].sort()
    mass = weights[order].cumsum(0)
    best = min(float(values[j] - values[i]) for i in range(40) for j in range(i, 40)
               if float(mass[j] - (mass[i - 1] if i else 0.0)) >= 0.8 - 1e-12)
    inside = weights[(draws[:, 0] >= low) & (draws[:, 0] <= high)].sum()
    assert float(high - low) == pytest.approx(best)
    assert float(inside) >= 0.8 - 1e-12


def test_weights_of_another_length_or_unnormalized_are_refused():
    draws = torch.randn(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weights must be 10 finite non-negative numbers "
                       r"summing to 1 \(one per draw\), got shape \(9,\)"):
        hdi(draws, 0.9, torch.full((9,), 1 / 9, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"summing to 10"):
        hdi(draws, 0.9, torch.ones(10, dtype=torch.float64))


def test_mapped_draws_map_the_corrected_mean():
    """An affine change of coordinates moves the corrected mean through the same map."""
    draws = _weighted_normal(0.3, 0.8)
    theta = torch.cat([draws.theta, 2 * draws.theta], dim=1)
    both = ImportanceDraws(theta, draws.weights, draws.khat, draws.n_ratios)
    A = torch.tensor([[2.0, 0.5], [0.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 3.0], dtype=torch.float64)
    mapped = both.mapped(A, b)
    torch.testing.assert_close(mapped.moments(mapped.theta)[0], A @ both.moments(theta)[0] + b)


class UnknownVariance(nb.Model):
    """``y_i ~ N(0, variance)``, ``variance ~ InverseGamma(2, 2)``: the posterior is
    ``InverseGamma(2 + n/2, 2 + sum y^2 / 2)``, right-skewed on few rows."""

    def __init__(self) -> None:
        super().__init__()
        two = torch.tensor(2.0, dtype=torch.float64)
        self.variance = nb.param(InverseGamma(two, two))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(torch.zeros_like(x[:, 0]), self.variance.sqrt())


def test_default_summary_is_corrected_towards_the_exact_posterior():
    """20 rows: ``q`` (Gaussian in log variance) understates the sd by 7-8%; the default
    ``mean``/``sd``/``summary`` are PSIS-corrected from the fit's k-hat draws (k about
    0.4): the sd within 5% (3-4% low over three seeds: weighted draws under-represent the
    power-law right tail) and closer than ``q``'s, the mean within 0.05 sd (Monte Carlo
    sd of ~9,800 effective draws: 0.01 sd). ``corrected=False`` and ``q_sd`` give ``q``'s
    own; an explicitly chosen family computes no k-hat and is not corrected."""
    n = 20
    y = 1.5 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.zeros(n, 1, dtype=torch.float64)
    shape, rate = 2 + n / 2, 2 + float(y.pow(2).sum()) / 2
    exact_mean, exact_sd = rate / (shape - 1), rate / ((shape - 1) * math.sqrt(shape - 2))
    post = nb.fit(UnknownVariance(), x, y, seed=0, progress=False)
    assert post.importance is not None and post.info.khat <= 0.7
    table, q_table = post.summary(), post.summary(corrected=False)
    assert table.index.name == f"PSIS-corrected, the fit's k-hat {post.info.khat:.2f}"
    assert q_table.index.name == f"not corrected, the fit's k-hat {post.info.khat:.2f}"
    assert q_table.attrs["khat"] is None
    assert table.loc["variance", "sd"] == pytest.approx(float(post.sd["variance"]))
    assert q_table.loc["variance", "sd"] == pytest.approx(float(post.q_sd["variance"]))
    assert abs(float(post.sd["variance"]) / exact_sd - 1) < 0.05
    assert abs(float(post.sd["variance"]) - exact_sd) < abs(float(post.q_sd["variance"]) - exact_sd)
    assert abs(float(post.mean["variance"]) - exact_mean) < 0.05 * exact_sd
    explicit = nb.fit(UnknownVariance(), x, y, family="fullrank", seed=0, progress=False)
    assert explicit.importance is None
    assert explicit.summary().equals(explicit.summary(corrected=False))


class NoisyLine(nb.Model):
    """``y ~ N(a + b x, s)``, ``a, b ~ N(0, 10)``, ``s ~ HalfNormal(5)``."""

    def __init__(self) -> None:
        super().__init__()
        f64 = torch.float64
        self.a = nb.param(Normal(torch.tensor(0.0, dtype=f64), 10.0))
        self.b = nb.param(Normal(torch.tensor(0.0, dtype=f64), 10.0))
        self.s = nb.param(torch.distributions.HalfNormal(torch.tensor(5.0, dtype=f64)))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(self.a + self.b * x[:, 0], self.s)


def test_predictions_follow_the_corrected_posterior():
    """Where the summaries are corrected, predictions resample the weighted draws: the
    predictive mean at ``x`` is ``a + b x`` under the corrected means, within four Monte
    Carlo sds. Those add the resampling's (``sd / sqrt(20,000)``) and the gap between the
    weighted mean of the kept draws and the corrected one, which is centred on ``q``'s exact
    mean (``sd / sqrt(S_kept)``), ``sd`` being that of ``a + b x``. On these 30 rows the
    correction moves the means by under 0.01 sd, so ``q``'s own draws would pass that
    check too; weights all on one draw, which predict exactly that draw's line, show the
    predictions take them."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(30, 1, generator=g, dtype=torch.float64)
    y = 1.0 + 2.0 * x[:, 0] + 0.5 * torch.randn(30, generator=g, dtype=torch.float64)
    post = nb.fit(NoisyLine(), x, y, seed=0, progress=False)
    assert post.importance is not None
    new = torch.tensor([[0.0], [0.5], [1.0]], dtype=torch.float64)
    pred = post.predict(new, n_samples=20_000, seed=1)
    draws = post.importance.theta
    line = draws[:, 0:1] + draws[:, 1:2] * new[:, 0]
    sd = line.std(0)
    expected = post.mean["a"] + post.mean["b"] * new[:, 0]
    tolerance = 4 * sd * math.sqrt(1 / 20_000 + 1 / draws.shape[0])
    assert ((pred.mean - expected).abs() <= tolerance).all(), (pred.mean, expected, tolerance)
    # and they do use the weights: all of it on one draw predicts that draw's line
    one = torch.zeros_like(post.importance.weights)
    one[7] = 1.0
    post.importance = ImportanceDraws(draws, one, post.importance.khat, post.importance.n_ratios)
    torch.testing.assert_close(post.predict(new, n_samples=50, seed=2).mean, line[7])


def test_a_budget_that_can_correct_is_spent_whole():
    """15,000 rows: the k-hat budget (2,666 draws) keeps enough draws to correct the
    summaries, so k-hat takes all of it (not half, as where no correction is possible)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(15_000, 1, generator=g, dtype=torch.float64)
    y = 1.0 + 2.0 * x[:, 0] + 0.5 * torch.randn(15_000, generator=g, dtype=torch.float64)
    post = nb.fit(NoisyLine(), x, y, seed=0, progress=False)
    assert post.info.khat_draws == 2666 and post.importance is not None, post.info


def test_a_large_data_set_leaves_too_few_draws_to_correct_by():
    """40,000 rows: the k-hat budget of 4e7 row-draws allows 1,000 draws, under the 2,000
    a correction needs, so the summary is ``q``'s and both it and ``info`` say why (a
    clearly usable fit stops at the first half of the budget)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(40_000, 1, generator=g, dtype=torch.float64)
    y = 1.0 + 2.0 * x[:, 0] + 0.5 * torch.randn(40_000, generator=g, dtype=torch.float64)
    post = nb.fit(NoisyLine(), x, y, seed=0, progress=False)
    assert post.info.khat_draws == 500 and post.importance is None
    assert "its k-hat draws cannot correct the summaries" in post.info.family_reason
    assert post.summary().index.name == f"not corrected, the fit's k-hat {post.info.khat:.2f}"
