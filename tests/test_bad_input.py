"""Bad input to ``nb.fit`` and a ``Posterior``: a clear error naming the argument."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

import noisybayes as nb
from tests.test_conjugate_fit import KnownNoiseLine


@pytest.fixture(scope="module")
def fitted():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    y = x.sum(1) + torch.randn(50, generator=g, dtype=torch.float64)
    return x, y, nb.fit(KnownNoiseLine(2), x, y, seed=0, progress=False, max_steps=100)


@pytest.mark.parametrize(
    ("seed", "error", "message"),
    [
        (1.5, TypeError, "seed must be an integer in [0, 2**64) or None, got 1.5"),
        ("abc", TypeError, "seed must be an integer in [0, 2**64) or None, got 'abc'"),
        (True, TypeError, "seed must be an integer in [0, 2**64) or None, got True"),
        (2**70, ValueError, f"seed must be an integer in [0, 2**64) or None, got {2**70}"),
        (-1, ValueError, "seed must be an integer in [0, 2**64) or None, got -1"),
    ],
)
def test_a_seed_must_be_a_generator_seed(fitted, seed, error, message):
    x, y, _ = fitted
    with pytest.raises(error) as info:
        nb.fit(KnownNoiseLine(2), x, y, seed=seed, progress=False, max_steps=10)
    assert str(info.value) == message


def test_a_generator_must_be_a_torch_generator(fitted):
    x, y, _ = fitted
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got 3"):
        nb.fit(KnownNoiseLine(2), x, y, generator=3, progress=False)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, x: p.sample(-5), "n must be an integer >= 1, got -5"),
        (lambda p, x: p.predict(x, n_samples=0), "n_samples must be an integer >= 1, got 0"),
        (lambda p, x: p.predict(x, level=1.5), "level must be in (0, 1), got 1.5"),
        (lambda p, x: p.summary(1.5), "hdi_prob must be in (0, 1), got 1.5"),
        (lambda p, x: p.predict(torch.randn(5, 3, dtype=torch.float64)),
         "x must have the fit's shape past the rows, [('N', 2)], got [(5, 3)]"),
    ],
)
def test_posterior_arguments_are_checked(fitted, call, message):
    x, _, post = fitted
    with pytest.raises(ValueError) as info:
        call(post, x)
    assert str(info.value) == message


def test_an_error_inside_forward_names_the_shapes_and_chains_the_original(fitted):
    x, y, _ = fitted

    class Broken(nb.Model):
        def __init__(self) -> None:
            super().__init__()
            self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 1.0),
                                 shape=(2,))

        def forward(self, x):
            return Normal(x[:, :1] @ self.beta, 1.0)  # a shape bug in the user's code

    with pytest.raises(nb.ModelError, match=r"Broken.forward raised RuntimeError on inputs of "
                                            r"shape \(8, 2\) \(parameters: beta \(2,\)\)") as info:
        nb.fit(Broken(), x, y, progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)
