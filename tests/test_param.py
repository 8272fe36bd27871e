"""Parameters: shapes, supports and the unconstrained round trip."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Dirichlet, Gamma, HalfCauchy, Normal, constraints

import noisybayes as nb
from noisybayes.model.layout import ParamLayout


class Mixed(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nb.param(Normal(0.0, 10.0))
        self.beta = nb.param(Normal(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])), shape=(3,))
        self.sigma = nb.param(HalfCauchy(2.5))
        self.weights = nb.param(Dirichlet(torch.ones(4)))
        self.rate = nb.param(None, shape=(2,), support=constraints.positive)

    def forward(self, x):
        return Normal(self.alpha + x @ self.beta, self.sigma)


def test_shapes_and_supports_come_from_the_priors():
    specs = ParamLayout(Mixed()).specs
    assert specs["alpha"].shape == ()
    assert specs["beta"].shape == (3,)
    assert specs["sigma"].support is HalfCauchy(1.0).support
    assert specs["weights"].unconstrained_shape == (3,)  # a simplex of 4 has 3 free coordinates
    assert specs["rate"].prior is None


def test_scalar_prior_is_broadcast_over_the_shape():
    spec = nb.param(Normal(0.0, 10.0), shape=(5,))
    assert spec.prior.batch_shape == (5,)
    assert math.isclose(
        float(spec.log_prior(torch.zeros(5))),
        5 * float(Normal(0.0, 10.0).log_prob(torch.tensor(0.0))),
        rel_tol=1e-6,
    )


def test_flat_prior_adds_nothing():
    assert float(nb.param(None).log_prior(torch.tensor(3.0))) == 0.0


def test_labels_enumerate_scalars():
    labels = ParamLayout(Mixed()).labels()
    assert labels[:5] == ["alpha", "beta[0]", "beta[1]", "beta[2]", "sigma"]
    assert labels[-2:] == ["rate[0]", "rate[1]"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=10, max_size=10))
def test_unconstrain_inverts_constrain(values):
    layout = ParamLayout(Mixed())
    u = torch.tensor(values, dtype=torch.float64)
    constrained = layout.values(u)
    assert constrained["sigma"] > 0 and torch.isclose(
        constrained["weights"].sum(), torch.tensor(1.0, dtype=torch.float64)
    )
    torch.testing.assert_close(layout.unconstrain(constrained), u)


def test_log_jacobian_of_a_positive_parameter():
    """sigma = exp(u): log p(u) = log p_sigma(e^u) + u."""

    class Scale(nb.Model):
        def __init__(self):
            super().__init__()
            self.sigma = nb.param(Gamma(2.0, 3.0))

        def forward(self, x):
            return Normal(x, self.sigma)

    layout = ParamLayout(Scale())
    u = torch.tensor([0.7])
    values, log_det = layout.constrain(u)
    torch.testing.assert_close(log_det, u[0])
    torch.testing.assert_close(values["sigma"], u[0].exp())
