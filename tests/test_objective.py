"""The objective's pieces: the closed-form prior term, user-defined priors, tuple inputs."""

from __future__ import annotations

import math
from contextlib import nullcontext
from unittest.mock import patch

import torch
from torch.distributions import Distribution, Normal, constraints

import noisybayes as nb
from noisybayes.infer.objective import LogJoint
from noisybayes.math.families import FullRank
from noisybayes.model.layout import ParamLayout


class Line(nb.Model):
    def __init__(self, prior: Distribution) -> None:
        super().__init__()
        self.beta = nb.param(prior, shape=(3,))

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> Normal:
        return Normal(x @ self.beta + offset, 1.0)


class ShiftedLogistic(Distribution):
    """A prior torch knows no KL for: the closed form is unavailable, Monte Carlo is used."""

    support = constraints.real
    arg_constraints: dict = {}

    def __init__(self, loc: float, scale: float) -> None:
        self.loc, self.scale = torch.tensor(loc), torch.tensor(scale)
        super().__init__(batch_shape=torch.Size(), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        new = ShiftedLogistic(float(self.loc), float(self.scale))
        Distribution.__init__(new, torch.Size(batch_shape), validate_args=False)
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = (value - self.loc) / self.scale
        return -z - 2 * torch.nn.functional.softplus(-z) - self.scale.log()


def test_closed_form_prior_term_equals_its_monte_carlo_estimate():
    """E_q[log p(beta)] for a Normal prior: closed form vs 200,000 draws (4-sigma bound)."""
    layout = ParamLayout(Line(Normal(0.5, 2.0)))
    log_joint = LogJoint(Line(Normal(0.5, 2.0)), layout)
    assert log_joint.closed_form == {"beta"}
    family = FullRank(torch.tensor([0.3, -1.0, 2.0]), torch.eye(3) * 0.7)
    with torch.no_grad():
        family.off_diag.copy_(torch.tril(torch.full((3, 3), 0.4), -1))
    with torch.no_grad():
        exact = float(log_joint.expected_log_prior(family))
    draws = family.rsample(200_000, generator=torch.Generator().manual_seed(0)).detach()
    log_p = Normal(0.5, 2.0).log_prob(draws).sum(-1)
    standard_error = float(log_p.std()) / math.sqrt(len(log_p))
    assert abs(float(log_p.mean()) - exact) < 4 * standard_error


def test_a_user_defined_prior_without_kl_is_handled_by_monte_carlo():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    offset = torch.full((400,), 2.0, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64) + offset
    y = y + torch.randn(400, generator=g, dtype=torch.float64)
    model = Line(ShiftedLogistic(0.0, 1.0))
    assert LogJoint(model, ParamLayout(model)).closed_form == frozenset()
    post = nb.fit(model, (x, offset), y, seed=0, progress=False)
    exact = nb.gaussian_linear_posterior(x, y - offset, 1.0)  # flat-prior reference
    # the logistic prior (sd 1.8) barely moves a posterior of sd 0.05: within 0.1 sd
    assert ((post.mean["beta"] - exact.loc) / exact.scale).abs().max() < 0.1
    assert (post.sd["beta"] / exact.scale - 1).abs().max() < 0.1


def test_tuple_inputs_reach_forward_as_positional_arguments():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    offset = torch.full((50,), 100.0, dtype=torch.float64)
    y = offset + x.sum(-1)
    post = nb.fit(Line(Normal(0.0, 10.0)), (x, offset), y, seed=0, progress=False)
    exact = nb.gaussian_linear_posterior(x, y - offset, 1.0, 0.0, 0.01)
    assert ((post.mean["beta"] - exact.loc) / exact.scale).abs().max() < 0.1
    pred = post.predict((x[:4], offset[:4]))
    assert pred.mean.shape == (4,) and (pred.mean > 90).all()


class Unexpandable(Distribution):
    """A user's prior with only ``support`` and ``log_prob`` (no ``expand``)."""

    support = constraints.real
    arg_constraints: dict = {}

    def __init__(self) -> None:
        super().__init__(batch_shape=torch.Size(), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -0.5 * (value / 10.0) ** 2


def test_a_prior_without_expand_is_broadcast():
    spec = nb.param(Unexpandable(), shape=(3,))
    assert isinstance(spec.prior, Unexpandable)
    torch.testing.assert_close(spec.log_prior(torch.ones(3)), torch.tensor(-0.015))


def test_vector_supported_parameters_get_exact_moments():
    """``MultivariateNormal`` prior: support ``real_vector``, identity transform, exact moments."""
    from torch.distributions import MultivariateNormal

    class Mvn(nb.Model):
        def __init__(self):
            super().__init__()
            self.beta = nb.param(MultivariateNormal(torch.zeros(2), torch.eye(2) * 4.0))

        def forward(self, x):
            return Normal(x @ self.beta, 1.0)

    layout = ParamLayout(Mvn())
    assert layout.is_identity("beta")


def _scales(n: int) -> dict[str, object]:
    """Scales a likelihood may be built with: one value for all rows (the shortcut) or one
    per row (torch's log_prob)."""
    return {"float": 0.7, "0-d tensor": torch.tensor(0.7, dtype=torch.float64),
            "per row": torch.linspace(0.5, 1.5, n, dtype=torch.float64),
            "expanded column": torch.tensor([[0.7]], dtype=torch.float64).expand(n, 1)}


def test_summed_log_prob_equals_torch_normal_log_prob_for_every_kind_of_scale():
    """The shortcut for a scale shared by all rows gives torch's value and gradient (to
    rounding of a float64 sum of 200 terms, 1e-12 relative), alone and under vmap over
    draws of a scalar scale; other likelihoods and shapes take torch's path unchanged."""
    from torch.func import vmap

    from noisybayes.infer.objective import summed_log_prob

    torch.manual_seed(0)
    n = 200
    y, loc = torch.randn(n, 1, dtype=torch.float64), torch.randn(n, 1, dtype=torch.float64)
    for name, scale in _scales(n).items():
        rows = (n,) if name == "per row" else (n, 1)
        target = y.reshape(rows)
        mean = loc.reshape(rows).clone().requires_grad_(True)
        shared = name != "per row"
        with patch.object(Normal, "log_prob", side_effect=AssertionError) if shared else (
                nullcontext()):  # a shared scale never reaches torch's log_prob
            fast = summed_log_prob(Normal(mean, scale), target)
        (fast_grad,) = torch.autograd.grad(fast, mean)
        reference = Normal(mean, scale).log_prob(target).sum()
        (reference_grad,) = torch.autograd.grad(reference, mean)
        assert torch.allclose(fast, reference, rtol=1e-12), name
        assert torch.allclose(fast_grad, reference_grad, rtol=1e-12), name
    sigmas = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    per_draw = vmap(lambda s: summed_log_prob(Normal(loc[:, 0], s), y[:, 0]))(sigmas)
    torch_per_draw = torch.stack([Normal(loc[:, 0], s).log_prob(y[:, 0]).sum() for s in sigmas])
    assert torch.allclose(per_draw, torch_per_draw, rtol=1e-12)
    heteroscedastic = vmap(lambda s: summed_log_prob(Normal(loc[:, 0], s * (1 + y[:, 0] ** 2)),
                                                     y[:, 0]))(sigmas)
    assert torch.allclose(heteroscedastic, torch.stack(
        [Normal(loc[:, 0], s * (1 + y[:, 0] ** 2)).log_prob(y[:, 0]).sum() for s in sigmas]),
        rtol=1e-12)
    broadcasting = summed_log_prob(Normal(loc[:, 0], 1.0), y)  # (n,) against (n, 1): n x n
    assert torch.allclose(broadcasting, Normal(loc[:, 0], 1.0).log_prob(y).sum(), rtol=1e-12)


def test_float32_log_likelihoods_sum_in_float64_with_float32_gradients():
    """On float32 rows the value is the float64 sum of the float32 terms (to 1e-12), for a
    shared scale's shortcut and for torch's ``log_prob``, and the gradient is float32's;
    under vmap over draws of the scale the same to float32's rounding of ``y / s`` (the
    reference divides first); a row of density 0 keeps the sum at ``-inf`` (a line search
    steps back from it; NaN would stop it); a joint density of all rows, one number, is its
    own sum."""
    from torch.func import vmap

    from noisybayes.infer.objective import summed_log_prob

    g = torch.Generator().manual_seed(0)
    y = torch.randn(100_000, generator=g) * 30
    loc = torch.zeros(100_000, requires_grad=True)
    half_log_two_pi = 0.5 * math.log(2 * math.pi)
    shortcut = -0.5 * (y * y).double().sum() - y.numel() * half_log_two_pi
    per_row = Normal(0.0, torch.ones(100_000)).log_prob(y).double().sum()
    for likelihood, exact in ((Normal(loc, 1.0), shortcut),
                              (Normal(loc, torch.ones(100_000)), per_row)):
        value = summed_log_prob(likelihood, y)
        assert value.dtype == torch.float64
        assert float((value - exact).abs()) <= 1e-12 * float(exact.abs())
        (gradient,) = torch.autograd.grad(value, loc)
        assert gradient.dtype == torch.float32 and torch.equal(gradient, y)
    scales = torch.tensor([0.5, 2.0])
    per_draw = vmap(lambda s: summed_log_prob(Normal(loc.detach(), s), y))(scales)
    exact = torch.stack([-0.5 * ((y / s) ** 2).double().sum() - y.numel() * (
        math.log(float(s)) + half_log_two_pi) for s in scales])
    assert torch.allclose(per_draw, exact, rtol=1e-7)
    rate = torch.tensor([1.0, 0.0], requires_grad=True)
    impossible = summed_log_prob(torch.distributions.Poisson(rate), torch.tensor([1.0, 2.0]))
    assert float(impossible) == -math.inf
    # a joint density over all rows is one number: its own sum
    joint = torch.distributions.Independent(Normal(loc, 1.0), 1)
    value = summed_log_prob(joint, y)
    assert value.dtype == torch.float64 and float(value) == float(joint.log_prob(y))
    (gradient,) = torch.autograd.grad(value, loc)
    assert torch.equal(gradient, y)
