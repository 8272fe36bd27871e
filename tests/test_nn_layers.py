"""BayesLinear and BayesConv2d: equivalences, closed forms and seeded statistics.

Statistical tolerances are 5 Monte Carlo standard errors (written at each assert), so a
correct implementation fails with probability below 1e-6 per check.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

import noisybayes.nn as bnn
from noisybayes.nn.priors import mean_field_kl

Z = 5.0  # standard errors allowed in statistical checks


def _zero_variance(layer: nn.Module) -> None:
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("scale_free"):
                p.fill_(-float("inf"))


@pytest.mark.parametrize("flipout", [False, True])
def test_linear_with_zero_variance_equals_nn_linear_at_the_means(flipout):
    torch.manual_seed(0)
    plain = nn.Linear(4, 3)
    layer = bnn.BayesLinear.from_linear(plain, flipout=flipout)
    _zero_variance(layer)
    x = torch.randn(10, 4)
    torch.testing.assert_close(layer(x), plain(x))
    with bnn.posterior_mean(layer):
        torch.testing.assert_close(layer(x), plain(x))


def test_conv_with_zero_variance_equals_nn_conv2d_at_the_means():
    torch.manual_seed(0)
    plain = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    layer = bnn.BayesConv2d.from_conv(plain)
    _zero_variance(layer)
    x = torch.randn(4, 2, 9, 9)
    torch.testing.assert_close(layer(x), plain(x))


def test_initial_scale_inverts_softplus_exactly():
    layer = bnn.BayesLinear(25, 2, init_scale=0.3, dtype=torch.float64)
    f64 = torch.float64
    torch.testing.assert_close(layer.weight_scale, torch.full((2, 25), 0.3 / 5, dtype=f64))
    torch.testing.assert_close(layer.bias_scale, torch.full((2,), 0.06, dtype=f64))


def test_closed_form_kl_equals_its_monte_carlo_estimate():
    torch.manual_seed(1)
    layer = bnn.BayesLinear(6, 4, prior=Normal(0.0, 0.7), init_scale=2.0, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_loc.normal_()
    exact = layer.kl().item()
    # MC: sum_i log q(w_i) - log p(w_i) over n independent draws of all weights
    q_w = Normal(layer.weight_loc, layer.weight_scale)
    q_b = Normal(layer.bias_loc, layer.bias_scale)
    n = 20_000
    w, b = q_w.sample((n,)), q_b.sample((n,))
    prior = Normal(torch.tensor(0.0, dtype=torch.float64), 0.7)
    est = ((q_w.log_prob(w) - prior.log_prob(w)).sum((1, 2))
           + (q_b.log_prob(b) - prior.log_prob(b)).sum(1))
    se = est.std().item() / math.sqrt(n)
    assert abs(est.mean().item() - exact) < Z * se


def test_scale_mixture_kl_is_unbiased_monte_carlo():
    """No closed form: compare the mean of many one-draw estimates with quadrature."""
    prior = bnn.scale_mixture_prior(0.5, 1.0, 0.1)
    loc = torch.tensor([0.3, -1.2, 0.0], dtype=torch.float64)
    scale = torch.tensor([0.5, 0.2, 1.0], dtype=torch.float64)
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    q = Normal(loc[:, None], scale[:, None])
    log_q = q.log_prob(grid)
    integrand = log_q.exp() * (log_q - prior.log_prob(grid))
    exact = torch.trapezoid(integrand, grid, dim=1).sum().item()
    gen = torch.Generator().manual_seed(3)
    n = 5_000
    draws = torch.stack([mean_field_kl(loc, scale, prior, generator=gen) for _ in range(n)])
    se = draws.std().item() / math.sqrt(n)
    assert se > 0 and abs(draws.mean().item() - exact) < Z * se


def test_scale_mixture_log_density_matches_a_torch_mixture():
    from torch.distributions import Categorical, MixtureSameFamily

    ours = bnn.scale_mixture_prior(0.3, 1.5, 0.1)
    theirs = MixtureSameFamily(Categorical(torch.tensor([0.3, 0.7], dtype=torch.float64)),
                               Normal(torch.zeros(2, dtype=torch.float64),
                                      torch.tensor([1.5, 0.1], dtype=torch.float64)))
    w = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(ours.log_prob(w), theirs.log_prob(w))
    draws = ours.sample((40_000,))
    # sample variance of a mixture: se ~ sqrt((E w^4 - var^2) / n); E w^4 = 3 sum pi s^4
    var = ours.variance.item()
    se = math.sqrt((3 * (0.3 * 1.5**4 + 0.7 * 0.1**4) - var**2) / 40_000)
    assert abs(draws.var().item() - var) < Z * se


def test_scale_mixture_prior_gives_a_finite_monte_carlo_kl_with_gradients():
    layer = bnn.BayesLinear(3, 2, prior=bnn.scale_mixture_prior())
    kl = layer.kl(generator=torch.Generator().manual_seed(0))
    kl.backward()
    assert torch.isfinite(kl) and layer.weight_scale_free.grad is not None


@pytest.mark.parametrize("flipout", [False, True])
def test_layer_noise_matches_explicit_weight_sampling(flipout):
    """Per row, y = x W^T + b with W ~ q: mean x.loc + b_loc, variance x^2.scale^2 + b_scale^2."""
    torch.manual_seed(2)
    layer = bnn.BayesLinear(5, 2, init_scale=1.5, flipout=flipout, dtype=torch.float64)
    x = torch.randn(1, 5, dtype=torch.float64)
    n = 20_000
    with torch.no_grad():
        # local reparameterization: each row of one pass is an independent draw;
        # Flipout: the rows of one pass share dW, so independent draws need separate passes
        sampled = torch.cat([layer(x) for _ in range(n)]) if flipout else layer(x.expand(n, 5))
        w = layer.weight_loc + layer.weight_scale * torch.randn(n, 2, 5, dtype=torch.float64)
        bias = layer.bias_loc + layer.bias_scale * torch.randn(n, 2, dtype=torch.float64)
        explicit = torch.einsum("i,nji->nj", x[0], w) + bias
    var = explicit.var(0)
    # difference of two independent means: se = sqrt(2 var / n)
    assert ((sampled.mean(0) - explicit.mean(0)).abs() < Z * (2 * var / n).sqrt()).all()
    # difference of two Gaussian sample variances: se = var sqrt(2 * 2/(n-1))
    assert ((sampled.var(0) - var).abs() < Z * var * math.sqrt(4 / (n - 1))).all()


def test_local_reparameterization_and_flipout_have_lower_gradient_variance():
    torch.manual_seed(4)
    layer = bnn.BayesLinear(10, 1, init_scale=1.0)
    x, y = torch.randn(64, 10), torch.randn(64, 1)

    def grads(mode: str) -> torch.Tensor:
        layer.zero_grad()
        if mode == "shared":  # one weight draw shared by the batch
            w = layer.weight_loc + layer.weight_scale * torch.randn_like(layer.weight_loc)
            b = layer.bias_loc + layer.bias_scale * torch.randn_like(layer.bias_loc)
            out = F.linear(x, w, b)
        else:
            layer.flipout = mode == "flipout"
            out = layer(x)
        F.mse_loss(out, y).backward()
        return torch.cat([layer.weight_loc.grad.ravel(), layer.weight_scale_free.grad.ravel()])

    variance = {m: torch.stack([grads(m) for _ in range(400)]).var(0).sum()
                for m in ("local", "flipout", "shared")}
    # per-row noise averages over 64 rows; a ratio below 1/2 is far outside the MC error of
    # variances from 400 draws (relative se about sqrt(2/400) = 7%)
    assert variance["local"] < 0.5 * variance["shared"]
    assert variance["flipout"] < 0.5 * variance["shared"]


def test_conv_flipout_matches_explicit_weight_sampling_in_mean_and_variance():
    torch.manual_seed(5)
    layer = bnn.BayesConv2d(2, 1, 2, init_scale=1.0, dtype=torch.float64)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    n = 3_000
    with torch.no_grad():  # one pass per draw: the rows of one pass share dW
        sampled = torch.cat([layer(x) for _ in range(n)]).reshape(n, -1)
        w = layer.weight_loc + layer.weight_scale * torch.randn(n, 1, 2, 2, 2, dtype=torch.float64)
        b = layer.bias_loc + layer.bias_scale * torch.randn(n, 1, dtype=torch.float64)
        patches = F.unfold(x, 2)[0]  # (C*k*k, L)
        explicit = w.reshape(n, -1) @ patches + b
    var = explicit.var(0)
    assert ((sampled.mean(0) - explicit.mean(0)).abs() < Z * (2 * var / n).sqrt()).all()
    assert ((sampled.var(0) - var).abs() < Z * var * math.sqrt(4 / (n - 1))).all()


def test_posterior_mean_restores_the_mode_when_the_block_raises():
    layer = bnn.BayesLinear(2, 2)
    with pytest.raises(RuntimeError, match="inside"), bnn.posterior_mean(layer):
        assert layer.use_mean
        raise RuntimeError("inside")
    assert layer.use_mean is False


def test_fixed_bias_is_a_plain_parameter():
    layer = bnn.BayesLinear(3, 2, bayesian_bias=False)
    assert isinstance(layer.bias, nn.Parameter) and layer.bias_scale is None
    assert {n for n, _ in layer.named_parameters()} == {"weight_loc", "weight_scale_free", "bias"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bnn.BayesLinear(0, 2), r"in_features must be an integer >= 1, got 0"),
        (lambda: bnn.BayesLinear(2, 2.5), r"out_features must be an integer >= 1, got 2.5"),
        (lambda: bnn.BayesLinear(2, 2, init_scale=-1.0), r"init_scale must be .*> 0, got -1.0"),
        (lambda: bnn.BayesLinear(2, 2, prior="normal"), r"prior must be a torch.distributions"),
        (lambda: bnn.BayesConv2d(3, 4, 3, groups=2), r"groups must divide .* got 2"),
        (lambda: bnn.scale_mixture_prior(weight=1.5), r"weight must be in \(0, 1\), got 1.5"),
        (lambda: bnn.scale_mixture_prior(scale_2=0.0), r"scale_2 must be > 0, got 0.0"),
        (lambda: bnn.BayesConv2d.from_conv(nn.Conv2d(1, 1, 3, padding_mode="reflect")),
         r"layer must use numeric zero padding, got .*'reflect'"),
        (lambda: bnn.BayesConv2d(1, 1, 1)(torch.randn(3, 1, 4)), r"x must be 4-D .*\(3, 1, 4\)"),
    ],
)
def test_layer_errors_name_the_argument_and_value(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_prior_with_an_event_shape_is_rejected():
    from torch.distributions import MultivariateNormal

    with pytest.raises(ValueError, match=r"prior must be a per-weight .* event_shape \(2,\)"):
        bnn.BayesLinear(2, 2, prior=MultivariateNormal(torch.zeros(2), torch.eye(2)))
