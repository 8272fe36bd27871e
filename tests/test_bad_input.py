"""Bad input to ``nb.fit`` and a ``Posterior``: a clear error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import noisybayes as nb
from tests.reference_models import Regression
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


class _WrongPriorSize(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.zeros(3, dtype=torch.float64), 1.0), shape=(2,))

    def forward(self, x):
        return Normal(x @ self.beta, 1.0)


class _NaNForward(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.zeros(2, dtype=torch.float64), 1.0))

    def forward(self, x):
        return Normal(x @ self.beta * float("nan"), 1.0)


def _line():
    return KnownNoiseLine(2)


def _with(tensor, row, value):
    tensor = tensor.clone()
    tensor[row] = value
    return tensor


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda x, y: (_line, x.half(), y.half()), TypeError,
         ["must be float32 or float64, got torch.float16", ".float()"]),
        (lambda x, y: (_line, x, y.to(torch.bfloat16)), TypeError,
         ["y must be float32 or float64, got torch.bfloat16"]),
        (lambda x, y: (_line, x.to(torch.complex128), y), TypeError,
         ["x must be real-valued"]),
        (lambda x, y: (_line, x, np.array(["a"] * len(y))), TypeError,
         ["y must be numeric", "<U1"]),
        (lambda x, y: (_line, x, _with(y, 3, float("nan"))), ValueError,
         ["y must be finite", "nan", "(3,)"]),
        (lambda x, y: (_line, _with(x, 4, float("inf")), y), ValueError,
         ["x must be finite", "inf", "(4, 0)"]),
        (lambda x, y: (_line, x[:-1], y), ValueError,
         ["x and y must have the same number of rows", "49 and 50"]),
        (lambda x, y: (_line, x, y[:, None]), ValueError,
         ["y must have the shape of the model's distribution", "(8, 1)"]),
        (lambda x, y: (lambda: torch.nn.Linear(2, 1), x, y), TypeError,
         ["model must be an nb.Model", "Linear"]),
        (lambda x, y: (_WrongPriorSize, x, y), ValueError,
         ["shape must be compatible with the prior's batch shape (3,)", "(2,)"]),
        (lambda x, y: (_line, x[:, :0], y), nb.ModelError,
         ["KnownNoiseLine.forward raised RuntimeError", "(8, 0)", "beta (2,)"]),
        (lambda x, y: (_NaNForward, x, y), nb.ModelError,
         ["_NaNForward.forward raised ValueError", "(8, 2)", "invalid values"]),
    ],
    ids=["float16", "bfloat16 y", "complex x", "text y", "NaN y", "inf x", "rows differ",
         "y of another shape", "a torch module", "prior of the wrong size", "zero columns",
         "forward returns NaN"],
)
def test_bad_data_and_models_for_fit_are_named(fitted, call, error, words):
    x, y, _ = fitted
    make_model, xs, ys = call(x, y)
    with pytest.raises(error) as info:
        nb.fit(make_model(), xs, ys, progress=False, max_steps=20)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"family": "diag"}, ValueError,
         "family must be one of 'auto', 'meanfield', 'lowrank', 'fullrank', got 'diag'"),
        ({"batch_size": 100}, ValueError, "batch_size must be <= the number of rows (50), got 100"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be > 0, got -1.0"),
        ({"max_steps": 0}, ValueError, "max_steps must be an integer >= 1, got 0"),
        ({"n_samples": 0}, ValueError, "n_samples must be an integer >= 1, got 0"),
        ({"rank": 0}, ValueError, "rank must be an integer >= 1, got 0"),
    ],
)
def test_fit_arguments_are_checked(fitted, options, error, message):
    x, y, _ = fitted
    with pytest.raises(error) as info:
        nb.fit(KnownNoiseLine(2), x, y, progress=False, **{"max_steps": 20, **options})
    assert str(info.value) == message


def test_a_learned_scale_on_data_fitted_exactly_is_named_in_the_divergence():
    """Every residual 0: the likelihood grows without bound as the scale goes to 0, so the
    posterior has no mode and the fit cannot converge; the error says which case it may be."""
    x = torch.linspace(0.0, 1.0, 20, dtype=torch.float64)[:, None]
    line = Regression(2, Normal(0.0, 10.0), torch.distributions.HalfCauchy(2.5))
    with pytest.raises(nb.DivergenceError, match=r"learned noise scale on data the model fits "
                       r"exactly, every residual 0, has no posterior mode"):
        nb.fit(line, torch.cat([torch.ones_like(x), x], 1), 1.0 + 2.0 * x[:, 0], seed=0,
               progress=False)
