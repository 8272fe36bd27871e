"""Gaussian dropout, additive noise and variational dropout: the log-uniform KL against its
exact series and published limits, the weight-noise equivalence, and seeded statistics.

Statistical tolerances are 5 Monte Carlo standard errors (written at each assert), so a
correct implementation fails with probability below 1e-6 per check.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, Poisson, kl_divergence

import noisybayes as nb
import noisybayes.nn as bnn
from noisybayes.math.log_uniform import K1, K2, K3, log_uniform_kl

Z = 5.0  # standard errors allowed in statistical checks
F64 = torch.float64
EULER_GAMMA = 0.5772156649015329


def exact_log_uniform_kl(log_alpha: float) -> float:
    """``KL(N(1, alpha) || log-uniform)``, zero at ``alpha -> infinity``, as an exact series.

    ``KL = -0.5 log alpha + E log|1 + sqrt(alpha) eps| + (gamma + log 2) / 2``; with
    ``(eps + m)^2`` a Poisson(``m^2 / 2``) mixture of chi-square variables with ``1 + 2j``
    degrees of freedom (``E log chi2_n = log 2 + digamma(n / 2)``) and ``m^2 = 1 / alpha``:
    ``KL = log 2 + gamma / 2 + 0.5 E_j digamma(j + 1/2)``, ``j ~ Poisson(1 / (2 alpha))``.
    """
    rate = 0.5 * math.exp(-log_alpha)
    width = 40 * math.sqrt(rate) + 60  # Poisson mass outside is far below float64 precision
    j = torch.arange(max(0, int(rate - width)), int(rate + width), dtype=F64)
    weights = Poisson(torch.tensor(rate, dtype=F64)).log_prob(j).exp()
    expected = (weights * torch.special.digamma(j + 0.5)).sum().item()
    return math.log(2) + EULER_GAMMA / 2 + 0.5 * expected


def test_constants_are_the_published_ones():
    assert (K1, K2, K3) == (0.63576, 1.87320, 1.48695)


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 1.5])
def test_exact_series_equals_monte_carlo(log_alpha):
    """The test's oracle checked once: the series against ``n`` direct draws."""
    n = 2_000_000
    eps = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=F64)
    terms = torch.log((1 + math.exp(log_alpha / 2) * eps).abs())
    const = (EULER_GAMMA + math.log(2)) / 2
    estimate = -0.5 * log_alpha + terms.mean().item() + const
    se = terms.std().item() / math.sqrt(n)
    assert abs(estimate - exact_log_uniform_kl(log_alpha)) < Z * se


def test_approximation_is_within_a_hundredth_of_the_exact_kl():
    """Molchanov et al. fit k1, k2, k3 to the exact curve; the fit's residual is below
    0.01 nats per weight over the whole range."""
    grid = torch.linspace(-10, 10, 81, dtype=F64)
    approx = log_uniform_kl(grid)
    exact = torch.tensor([exact_log_uniform_kl(float(v)) for v in grid], dtype=F64)
    assert (approx - exact).abs().max() < 0.01


def test_limits():
    """Large alpha: zero (exact limit). Small alpha: ``k1 - 0.5 log alpha``, whose offset
    ``k1`` approximates the exact one, ``(gamma + log 2) / 2 = 0.63518``."""
    big = torch.tensor([20.0, 40.0], dtype=F64)
    torch.testing.assert_close(log_uniform_kl(big), torch.zeros(2, dtype=F64), atol=1e-8, rtol=0)
    small = torch.tensor([-20.0, -40.0], dtype=F64)
    torch.testing.assert_close(log_uniform_kl(small) + 0.5 * small,
                               torch.full((2,), K1, dtype=F64), atol=1e-8, rtol=0)
    for log_alpha in (-12.0, -16.0):  # the exact curve's next term is -alpha / 2
        offset = exact_log_uniform_kl(log_alpha) + 0.5 * log_alpha
        assert abs(offset - (EULER_GAMMA + math.log(2)) / 2) < math.exp(log_alpha)
    assert abs(K1 - (EULER_GAMMA + math.log(2)) / 2) < 1e-3


def test_kl_is_decreasing_in_alpha_and_finite_at_a_zero_mean():
    grid = torch.linspace(-30, 30, 601, dtype=F64)
    assert (log_uniform_kl(grid).diff() < 0).all()
    loc = torch.zeros(3, dtype=F64, requires_grad=True)
    kl = kl_divergence(Normal(loc, torch.ones(3, dtype=F64)), bnn.LogUniform()).sum()
    kl.backward()
    assert torch.isfinite(kl) and torch.isfinite(loc.grad).all()


def test_registered_kl_depends_on_the_ratio_alone():
    """Scale invariance of the prior: ``(loc, scale)`` and ``(c loc, c scale)`` cost the same."""
    loc = torch.tensor([0.3, -2.0, 1e-3], dtype=F64)
    scale = torch.tensor([0.1, 3.0, 1.0], dtype=F64)
    kl = kl_divergence(Normal(loc, scale), bnn.LogUniform())
    torch.testing.assert_close(kl, kl_divergence(Normal(7 * loc, 7 * scale), bnn.LogUniform()))
    torch.testing.assert_close(kl, log_uniform_kl(torch.log(scale**2 / loc**2)))


def test_log_uniform_has_no_draws():
    with pytest.raises(NotImplementedError, match="improper"):
        bnn.LogUniform().sample((2,))


def _set_log_alpha(layer: bnn.VariationalDropoutLinear, log_alpha: torch.Tensor) -> None:
    with torch.no_grad():
        scale = (0.5 * log_alpha).exp() * layer.weight_loc.abs()
        layer.weight_scale_free.copy_(scale.expm1().log())  # inverse softplus


def test_variational_dropout_layer_matches_explicit_weight_sampling():
    """Per row: ``y = x W^T + b`` with ``W ~ N(theta, alpha theta^2)`` drawn explicitly."""
    torch.manual_seed(6)
    layer = bnn.VariationalDropoutLinear(5, 2, dtype=F64)
    log_alpha = torch.linspace(-3, 2, 10, dtype=F64).reshape(2, 5)
    _set_log_alpha(layer, log_alpha)
    torch.testing.assert_close(layer.log_alpha, log_alpha)
    x = torch.randn(1, 5, dtype=F64)
    n = 20_000
    with torch.no_grad():
        sampled = layer(x.expand(n, 5))
        sd = (0.5 * log_alpha).exp() * layer.weight_loc.abs()
        w = layer.weight_loc + sd * torch.randn(n, 2, 5, dtype=F64)
        explicit = torch.einsum("i,nji->nj", x[0], w) + layer.bias
    var = explicit.var(0)
    # difference of two independent means: se = sqrt(2 var / n)
    assert ((sampled.mean(0) - explicit.mean(0)).abs() < Z * (2 * var / n).sqrt()).all()
    # difference of two Gaussian sample variances: se = var sqrt(2 * 2/(n-1))
    assert ((sampled.var(0) - var).abs() < Z * var * math.sqrt(4 / (n - 1))).all()


def test_variational_dropout_layer_kl_sums_the_approximation_over_its_weights():
    layer = bnn.VariationalDropoutLinear(4, 3, dtype=F64)
    assert layer.bias_scale is None  # a deterministic bias carries no KL
    torch.testing.assert_close(layer.kl(), log_uniform_kl(layer.log_alpha).sum())


def test_gaussian_dropout_on_inputs_is_weight_noise_with_variance_alpha_mu_squared():
    """``Linear(GaussianDropout(x))`` has per-output mean ``W x + b`` and variance
    ``alpha sum_i W_ji^2 x_i^2``: the local reparameterization of ``N(W, alpha W^2)``."""
    torch.manual_seed(7)
    dropout, linear = bnn.GaussianDropout(0.3), nn.Linear(6, 3, dtype=F64)
    x = torch.randn(1, 6, dtype=F64)
    n = 40_000
    with torch.no_grad():
        out = linear(dropout(x.expand(n, 6)))
        mean = linear(x)[0]
        var = dropout.alpha * (linear.weight**2 * x**2).sum(1)
    # sample mean: se = sqrt(var / n); sample variance of Gaussians: se = var sqrt(2 / (n-1))
    assert ((out.mean(0) - mean).abs() < Z * (var / n).sqrt()).all()
    assert ((out.var(0) - var).abs() < Z * var * math.sqrt(2 / (n - 1))).all()


def test_gaussian_dropout_has_the_variance_of_rescaled_bernoulli_dropout():
    """Bernoulli dropout's mask ``m / (1 - p)`` has mean 1 and variance ``p / (1 - p)``."""
    p = 0.4
    torch.manual_seed(8)
    n = 100_000
    ones = torch.ones(n, dtype=F64)
    gaussian = bnn.GaussianDropout(p)(ones)
    bernoulli = nn.Dropout(p)(ones)
    alpha = p / (1 - p)
    assert bnn.GaussianDropout(p).alpha == pytest.approx(alpha)
    # sample means: se sqrt(alpha / n); Gaussian sample variance: se alpha sqrt(2 / (n - 1))
    assert abs(gaussian.mean().item() - 1) < Z * math.sqrt(alpha / n)
    assert abs(gaussian.var().item() - alpha) < Z * alpha * math.sqrt(2 / (n - 1))
    # the two-point mask's kurtosis is (1 - 6 p q) / (p q) + 3 (q = 1 - p), so its sample
    # variance has relative se sqrt((kurtosis - 1) / n), about 0.13% here
    kurtosis = (1 - 6 * p * (1 - p)) / (p * (1 - p)) + 3
    assert abs(bernoulli.var().item() - alpha) < Z * alpha * math.sqrt((kurtosis - 1) / n)


def test_additive_noise_has_its_scale():
    torch.manual_seed(9)
    n = 100_000
    out = bnn.GaussianNoise(0.3)(torch.full((n,), 2.0, dtype=F64))
    assert abs(out.mean().item() - 2.0) < Z * 0.3 / math.sqrt(n)
    assert abs(out.var().item() - 0.09) < Z * 0.09 * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("layer", [bnn.GaussianDropout(0.5), bnn.GaussianNoise(1.0),
                                   bnn.GaussianDropout(0.0), bnn.GaussianNoise(0.0)])
def test_fixed_noise_is_the_identity_in_eval_mode_or_at_zero(layer):
    x = torch.randn(4, 3)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    zero = layer.p == 0 if isinstance(layer, bnn.GaussianDropout) else layer.scale == 0
    assert torch.equal(layer(x), x) == zero


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bnn.GaussianDropout(1.0), r"p must be a number in \[0, 1\), got 1.0"),
        (lambda: bnn.GaussianDropout(-0.1), r"p must be a number in \[0, 1\), got -0.1"),
        (lambda: bnn.GaussianNoise(-1.0), r"scale must be a finite number >= 0, got -1.0"),
        (lambda: bnn.GaussianNoise(math.inf), r"scale must be a finite number >= 0, got inf"),
        (lambda: bnn.VariationalDropoutLinear(2, 2).sparsity(math.nan),
         r"threshold must be a finite number, got nan"),
    ],
)
def test_errors_name_the_argument_and_value(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_converter_with_the_log_uniform_prior_trains_into_a_network_posterior():
    """``nb.bayesian(prior=LogUniform())``: the ELBO's KL is the approximation summed over
    every weight, and ``nb.nn.train`` ends in the same ``NetworkPosterior``."""
    torch.manual_seed(10)
    net = nb.bayesian(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)),
                      prior=bnn.LogUniform())
    expected = sum(log_uniform_kl(torch.log(scale**2 / loc**2)).sum()
                   for _, loc, scale in bnn.gaussian_weights(net))
    torch.testing.assert_close(bnn.kl_divergence(net), expected)
    x = torch.randn(64, 2)
    y = x[:, :1] - x[:, 1:]
    lik = bnn.Gaussian()
    post = bnn.train(net, x, y, likelihood=lik, n_epochs=2, batch_size=32,
                     generator=torch.Generator().manual_seed(0))
    assert isinstance(post, bnn.NetworkPosterior) and isinstance(post, nb.Posterior)
    assert post.sample(3, seed=0)["0.weight"].shape == (3, 8, 2)


def test_variational_dropout_separates_relevant_from_irrelevant_inputs():
    """Linear regression on 6 inputs of which 2 matter (posterior sd of a coefficient about
    0.3 / sqrt(500) = 0.013): the relevant weights keep a tiny noise-to-signal ratio, every
    irrelevant one is noise-dominated, and those whose least-squares value is nearest zero
    pass the pruning threshold ``log alpha > 3``."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(500, 6, generator=gen)
    y = 2 * x[:, :1] - 1.5 * x[:, 1:2] + 0.3 * torch.randn(500, 1, generator=gen)
    torch.manual_seed(12)
    layer = bnn.VariationalDropoutLinear(6, 1)
    bnn.train(layer, x, y, likelihood=bnn.Gaussian(), n_epochs=300, batch_size=500,
              learning_rate=3e-2, generator=gen)
    log_alpha = layer.log_alpha.detach()[0]
    assert (log_alpha[:2] < -5).all() and (log_alpha[2:] > -2).all()
    least_squares = torch.linalg.lstsq(x, y).solution[:, 0].abs()
    pruned = log_alpha > 3
    assert pruned[2:].any() and least_squares[pruned].max() < least_squares[2:][~pruned[2:]].min()
    assert layer.sparsity() == pytest.approx(pruned.double().mean().item())
