"""The first fit in a process stays free of imports that cost more than the fit itself.

``torch._dynamo`` (imported by the first ``torch.optim`` optimiser or ``torch.func``
transform) and sympy (imported by the first ``torch.broadcast_shapes``, e.g. when a
``MultivariateNormal`` or an ``AffineTransform`` is built) take seconds on first use; the
default ``nb.fit``, its Adam path, ``nb.nn.train`` and ``BayesianLinearRegression().fit``
must not trigger them (the loop's Adam is ``engine.adam``, not a ``torch.optim.Adam``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Exponential,
    HalfCauchy,
    HalfNormal,
    TransformedDistribution,
)

from noisybayes.estimators._glm_model import _scaled

_SCRIPT = """
import sys, torch
import noisybayes as nb
from torch.distributions import HalfCauchy, Normal
from sklearn.datasets import load_diabetes

class Line(nb.Model):
    def __init__(self):
        super().__init__()
        self.alpha = nb.param(Normal(0.0, 10.0))
        self.beta = nb.param(Normal(0.0, 10.0))
        self.sigma = nb.param(HalfCauchy(2.5))
    def forward(self, x):
        return Normal(self.alpha + x[:, 0] * self.beta, self.sigma)

g = torch.Generator().manual_seed(0)
x = torch.randn(200, 1, generator=g)
y_line = 1 + 2 * x[:, 0] + 0.5 * torch.randn(200, generator=g)
nb.fit(Line(), x, y_line, seed=0, progress=False)
X, y = load_diabetes(return_X_y=True)
nb.BayesianLinearRegression().fit(X, y)
nb.fit(Line(), x, y_line, seed=0, progress=False, solver="adam", max_steps=20)
net = nb.bayesian(torch.nn.Linear(1, 1))
nb.nn.train(net, x, y_line, likelihood=nb.nn.Gaussian(), n_epochs=1,
            progress=False)
print(sorted(m for m in ("torch._dynamo", "sympy") if m in sys.modules))
"""


def test_default_fits_import_neither_dynamo_nor_sympy():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         check=True, timeout=600)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


@pytest.mark.parametrize("prior", [Exponential(2.0), HalfCauchy(2.5), HalfNormal(0.7)])
def test_a_scaled_prior_is_the_transformed_distribution(prior):
    """``factor * sigma``'s density in closed form equals the transformed distribution's."""
    values = torch.linspace(0.05, 5.0, 40)
    scaled = _scaled(prior, 0.3)
    expected = TransformedDistribution(prior, AffineTransform(0.0, 0.3)).log_prob(values)
    torch.testing.assert_close(scaled.log_prob(values), expected)
