"""The hand-written gradients of the layers' fused steps against autograd of the plain
operations they replace (float64, so agreement to 1e-10 is rounding, not approximation)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import noisybayes as nb
from noisybayes.engine.loop import adam
from noisybayes.nn.linear import LocalReparameterization, local_reparameterization
from noisybayes.nn.priors import SoftplusNormalKL, normal_kl, softplus_normal_kl


def _inputs(g: torch.Generator, bias: bool = True):
    x = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    loc = torch.randn(5, 4, generator=g, dtype=torch.float64)
    scale_free = torch.randn(5, 4, generator=g, dtype=torch.float64) - 1
    bias_loc = torch.randn(5, generator=g, dtype=torch.float64) if bias else None
    bias_free = torch.randn(5, generator=g, dtype=torch.float64) - 1 if bias else None
    noise = torch.randn(7, 3, 5, generator=g, dtype=torch.float64)
    return [t if t is None else t.requires_grad_() for t in
            (x, loc, scale_free, bias_loc, bias_free, noise)]


def test_local_reparameterization_matches_autograd_of_the_operations():
    for bias in (True, False):
        args = _inputs(torch.Generator().manual_seed(0), bias)
        weights = torch.randn(7, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        fused = LocalReparameterization.apply(*args)
        plain = local_reparameterization(*args)
        torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
        present = [a for a in args if a is not None]
        got = torch.autograd.grad((fused * weights).sum(), present)
        want = torch.autograd.grad((plain * weights).sum(), present)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(LocalReparameterization.apply,
                                    _inputs(torch.Generator().manual_seed(2)))


def test_bayes_linear_draws_the_same_outputs_as_before_from_the_same_seed():
    layer = nb.nn.BayesLinear(4, 3).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    torch.manual_seed(5)
    out = layer(x)
    torch.manual_seed(5)
    noise = torch.randn(6, 3, dtype=torch.float64)  # the layer's one draw, row by output
    want = local_reparameterization(x, layer.weight_loc, layer.weight_scale_free,
                                    layer.bias_loc, layer.bias_scale_free, noise)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_softplus_normal_kl_matches_torch_distributions_and_its_gradient():
    g = torch.Generator().manual_seed(3)
    locs = [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]
    frees = [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]
    prior_loc = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    prior_scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    args = (prior_loc, prior_scale, locs[0], frees[0], locs[1], frees[1])
    fused = SoftplusNormalKL.apply(*args)
    prior = Normal(prior_loc, prior_scale)
    reference = sum(kl_divergence(Normal(loc, F.softplus(free)), prior).sum()
                    for loc, free in zip(locs, frees, strict=True))
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    want = torch.autograd.grad(reference, args)
    for a, b in zip(torch.autograd.grad(fused, args), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(SoftplusNormalKL.apply, args)
    fixed = (prior_loc.detach(), prior_scale.detach())  # the gradient written in the forward
    shaped = (prior_loc.detach().reshape(1), prior_scale.detach().reshape(1))  # autograd's
    for prior_args in (fixed, shaped):
        fused = SoftplusNormalKL.apply(*prior_args, *args[2:])
        torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
        for a, b in zip(torch.autograd.grad(fused, args[2:]), want[2:], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    scale = F.softplus(frees[0])
    torch.testing.assert_close(normal_kl(locs[0], scale, prior_loc, prior_scale),
                               kl_divergence(Normal(locs[0], scale), prior), rtol=1e-12,
                               atol=1e-12)


def test_a_layer_kl_is_the_closed_form_of_its_weights_and_bias():
    layer = nb.nn.BayesLinear(4, 3, prior=Normal(0.0, 0.5)).double()
    prior = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    want = (kl_divergence(Normal(layer.weight_loc, layer.weight_scale), prior).sum()
            + kl_divergence(Normal(layer.bias_loc, layer.bias_scale), prior).sum())
    torch.testing.assert_close(layer.kl(), want, rtol=1e-6, atol=1e-6)  # a float32 prior


def test_the_loops_adam_is_fused_and_takes_torchs_adam_steps():
    g = torch.Generator().manual_seed(4)
    start = [torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g,
                                                                            dtype=torch.float64)]
    fused_params = [p.clone().requires_grad_() for p in start]
    plain_params = [p.clone().requires_grad_() for p in start]
    fused = adam(fused_params, 0.01)
    plain = torch.optim.Adam(plain_params, lr=0.01, foreach=False)
    assert fused.fused is True
    for step in range(20):  # the same gradients, a quadratic bowl around 1; every third
        for opt, params in ((fused, fused_params), (plain, plain_params)):  # step the first
            opt.zero_grad()                                 # parameter alone has a gradient
            sum(((p - 1) ** 2 * torch.arange(1, p.numel() + 1).view(p.shape)).sum()
                for p in (params[:1] if step % 3 == 2 else params)).backward()
            opt.step()
    for a, b in zip(fused_params, plain_params, strict=True):  # float64: rounding only
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert adam([torch.zeros(2, dtype=torch.int64)], 0.01).fused is False


def test_the_loops_adam_groups_dtypes_and_its_state_continues_in_torchs_adam():
    """Parameters of two dtypes (two calls of the fused kernel, each with its own step
    counts) take torch.optim.Adam's steps; after 5 steps its ``state_dict`` loads into a
    ``torch.optim.Adam``, which continues as the loop's Adam does."""
    g = torch.Generator().manual_seed(7)
    start = [torch.randn(4, generator=g, dtype=torch.float64), torch.randn(3, generator=g)]
    ours, theirs, alone = ([p.clone().requires_grad_() for p in start] for _ in range(3))
    fused = adam(ours, 0.05)
    reference = torch.optim.Adam(alone, lr=0.05, foreach=False)  # torch's, from the start
    assert len(fused.groups) == 2

    def close(mine, others):  # rounding only: float64 to 1e-12, float32 to 1e-6
        for a, b in zip(mine, others, strict=True):
            tol = 1e-12 if a.dtype == torch.float64 else 1e-6
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)

    def bowl(params):
        return sum(((p.double() - 1) ** 2 * torch.arange(1, p.numel() + 1)).sum()
                   for p in params)

    for step in range(10):
        if step == 5:  # the first 5 steps are torch's; then its Adam takes over our state
            close(ours, alone)
            with torch.no_grad():
                for a, b in zip(theirs, ours, strict=True):
                    a.copy_(b)
            plain = torch.optim.Adam(theirs, lr=0.05, foreach=False)
            plain.load_state_dict(copy.deepcopy(fused.state_dict()))  # not shared buffers
        runs = ((fused, ours), (plain, theirs) if step >= 5 else (reference, alone))
        for opt, params in runs:
            opt.zero_grad()
            bowl(params).backward()
            opt.step()
    close(ours, theirs)


def test_a_networks_kl_in_one_pass_equals_the_sum_over_its_layers():
    torch.manual_seed(0)
    shared = Normal(torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64))
    net = torch.nn.Sequential(
        nb.nn.BayesLinear(4, 5, prior=shared, dtype=torch.float64), torch.nn.ReLU(),
        nb.nn.BayesLinear(5, 3, prior=shared, bayesian_bias=False, dtype=torch.float64),
        nb.nn.BayesLinear(3, 2, dtype=torch.float64))  # its own default prior: a second group
    params = list(net.parameters())
    fused = nb.nn.kl_divergence(net)
    reference = sum(
        kl_divergence(Normal(loc, F.softplus(free)), layer.prior).sum()
        for layer in (net[0], net[2], net[3])
        for loc, free in ((layer.weight_loc, layer.weight_scale_free),
                          (layer.bias_loc, layer.bias_scale_free)) if loc is not None)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fused, params, allow_unused=True),
                    torch.autograd.grad(reference, params, allow_unused=True), strict=True):
        if b is None:  # the deterministic bias
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _penalty_gradients(function, args, wrt):
    """``d/d wrt`` of a gradient penalty ``|d sum(function(args) w) / d args[0]|^2``."""
    out = function(*args)
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
    (first,) = torch.autograd.grad((out * weights).sum(), args[0], create_graph=True)
    return torch.autograd.grad(first.square().sum(), wrt)


def test_second_derivatives_through_the_fused_nodes_are_autograds():
    """A gradient penalty on the input's gradient, differentiated again in the parameters:
    through the fused nodes it equals autograd's of the plain operations (float64: rounding
    only); the hand-written first gradient alone would leave the penalty without a graph."""
    args = _inputs(torch.Generator().manual_seed(5))
    wrt = [args[1], args[2], args[4]]
    fused = _penalty_gradients(LocalReparameterization.apply, args, wrt)
    plain = _penalty_gradients(local_reparameterization, args, wrt)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    g = torch.Generator().manual_seed(6)
    loc = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    free = (torch.randn(4, 3, generator=g, dtype=torch.float64) - 1).requires_grad_()
    prior = (torch.tensor(0.2, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64))

    def second(function):
        first = torch.autograd.grad(function(*prior, loc, free), (loc, free), create_graph=True)
        return torch.autograd.grad(sum(f.square().sum() for f in first), (loc, free))

    for a, b in zip(second(SoftplusNormalKL.apply), second(softplus_normal_kl), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
