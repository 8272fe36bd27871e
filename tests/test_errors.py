"""Bad input gets an error naming the argument, the rule and the value: one test per message."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch.distributions import HalfCauchy, Normal, Poisson, constraints

import noisybayes as nb
from noisybayes.math.intervals import hdi


class Line(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(0.0, 10.0), shape=(2,))
        self.sigma = nb.param(HalfCauchy(2.5))

    def forward(self, x):
        return Normal(x @ self.beta, self.sigma)


X = torch.randn(20, 2)
Y = torch.randn(20)


def raises(kind, message):
    return pytest.raises(kind, match=re.escape(message))


# --- nb.param ---------------------------------------------------------------------------
def test_prior_must_be_a_distribution():
    with raises(TypeError, "prior must be a torch.distributions.Distribution or None, got float"):
        nb.param(1.0)  # type: ignore[arg-type]


def test_support_must_be_a_constraint():
    with raises(
        TypeError, "support must be a torch.distributions.constraints.Constraint, got 'positive'"
    ):
        nb.param(None, support="positive")  # type: ignore[arg-type]


def test_support_must_match_the_prior():
    with raises(ValueError, "support must lie inside the prior's support"):
        nb.param(HalfCauchy(1.0), support=constraints.real)


def test_shape_must_match_the_prior_batch_shape():
    with raises(ValueError, "shape must be compatible with the prior's batch shape (3,), got (2,)"):
        nb.param(Normal(torch.zeros(3), 1.0), shape=(2,))


def test_shape_must_have_positive_sizes():
    with raises(ValueError, "shape must have positive sizes, got (0,)"):
        nb.param(None, shape=(0,))


def test_parameters_need_super_init():
    class Broken(nb.Model):
        def __init__(self):
            self.beta = nb.param(None)

    with raises(
        TypeError,
        "Broken.__init__ must call super().__init__() before declaring the parameter 'beta'",
    ):
        Broken()


def test_model_needs_a_parameter():
    class Empty(nb.Model):
        def forward(self, x):
            return Normal(x, 1.0)

    with raises(ValueError, "model must declare at least one nb.param, got none in Empty"):
        nb.fit(Empty(), X, Y, progress=False)


def test_model_must_be_an_nb_model():
    with raises(TypeError, "model must be an nb.Model, got Linear"):
        nb.fit(torch.nn.Linear(2, 1), X, Y, progress=False)  # type: ignore[arg-type]


# --- data ------------------------------------------------------------------------------
def test_nan_in_x():
    bad = X.clone()
    bad[3, 1] = float("nan")
    with raises(ValueError, "x must be finite, got 1 NaN/inf value(s), the first nan at index (3, 1)"):
        nb.fit(Line(), bad, Y, progress=False)


def test_inf_in_y():
    bad = Y.clone()
    bad[5] = float("inf")
    with raises(ValueError, "y must be finite, got 1 NaN/inf value(s), the first inf at index (5,)"):
        nb.fit(Line(), X, bad, progress=False)


def test_empty_data():
    with raises(ValueError, "y must not be empty, got shape (0,)"):
        nb.fit(Line(), X[:0], Y[:0], progress=False)


def test_rows_must_match():
    with raises(ValueError, "x and y must have the same number of rows, got 20 and 19"):
        nb.fit(Line(), X, Y[:19], progress=False)


def test_non_numeric_array():
    with raises(TypeError, "x must be numeric, got an array of dtype <U1"):
        nb.fit(Line(), np.array([["a", "b"]] * 20), Y, progress=False)


def test_non_numeric_dataframe_columns():
    frame = pd.DataFrame({"a": np.arange(20.0), "g": ["u"] * 20})
    with raises(TypeError, "X must have numeric columns only, got non-numeric ['g']"):
        nb.BayesianLinearRegression().fit(frame, Y)


def test_y_shape_must_match_the_likelihood():
    with raises(
        ValueError,
        "y must have the shape of the model's distribution: forward returned "
        "shape (8,) for the first 8 rows, y has (8, 1)",
    ):
        nb.fit(Line(), X, Y[:, None], progress=False)


def test_y_must_lie_in_the_likelihood_support():
    class Counts(nb.Model):
        def __init__(self):
            super().__init__()
            self.log_rate = nb.param(Normal(0.0, 1.0))

        def forward(self, x):
            return Poisson(self.log_rate.exp().expand(x.shape[0]))

    y = torch.tensor([1.0, 2.0, -1.0, 0.5])
    with raises(
        ValueError,
        "y must lie in the support of the likelihood (IntegerGreaterThan"
        "(lower_bound=0)), got 2 value(s) outside, e.g. -1.0 at row 2",
    ):
        nb.fit(Counts(), torch.zeros(4, 1), y, progress=False)


def test_forward_must_return_a_distribution():
    class Plain(nb.Model):
        def __init__(self):
            super().__init__()
            self.beta = nb.param(None, shape=(2,))

        def forward(self, x):
            return x @ self.beta

    with raises(
        TypeError, "model.forward must return a torch.distributions.Distribution, got Tensor"
    ):
        nb.fit(Plain(), X, Y, progress=False)


# --- fit options -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "kind", "message"),
    [
        (
            {"family": "diagonal"},
            ValueError,
            "family must be one of 'auto', 'meanfield', 'lowrank', 'fullrank', got 'diagonal'",
        ),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer >= 1, got 2.5"),
        ({"batch_size": 50}, ValueError, "batch_size must be <= the number of rows (20), got 50"),
        ({"n_samples": 0}, ValueError, "n_samples must be an integer >= 1, got 0"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be > 0, got -1.0"),
        (
            {"seed": 1, "generator": torch.Generator()},
            ValueError,
            "seed must be None when a generator is given, got 1",
        ),
    ],
)
def test_fit_options(options, kind, message):
    with raises(kind, message):
        nb.fit(Line(), X, Y, progress=False, **options)


def test_a_diverging_model_stops_with_an_error():
    class Diverging(nb.Model):
        """A scale declared on the real line: its prior pulls it below zero, where the
        likelihood is NaN."""

        def __init__(self):
            super().__init__()
            self.shift = nb.param(Normal(-5.0, 0.1))

        def forward(self, x):
            return Normal(x[:, 0], (1.0 + self.shift).expand(x.shape[0]))

    with pytest.raises(nb.DivergenceError, match="diverged"):
        nb.fit(Diverging(), X, Y, progress=False)


def test_hdi_prob_range():
    with raises(ValueError, "prob must be in (0, 1), got 1.5"):
        hdi(torch.randn(100), 1.5)


# --- the estimator ---------------------------------------------------------------------
def test_estimator_method():
    with raises(ValueError, "method must be one of 'auto', 'vi', 'exact', got 'mcmc'"):
        nb.BayesianLinearRegression(method="mcmc").fit(X, Y)  # type: ignore[arg-type]


def test_estimator_prior_scale():
    with raises(ValueError, "prior_scale must be > 0, got -2.0"):
        nb.BayesianLinearRegression(prior_scale=-2.0).fit(X, Y)


def test_estimator_noise_prior_type():
    with raises(TypeError, "noise_prior must be a torch Distribution, 'auto' or None, got 3"):
        nb.BayesianLinearRegression(noise_prior=3).fit(X, Y)  # type: ignore[arg-type]


def test_estimator_noise_scale():
    with raises(ValueError, "noise_scale must be > 0, got 0.0"):
        nb.BayesianLinearRegression(noise_scale=0.0).fit(X, Y)


def test_estimator_predict_before_fit():
    with raises(NotFittedError, "This BayesianLinearRegression instance is not fitted yet"):
        nb.BayesianLinearRegression().predict(X)


def test_estimator_predict_columns():
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None).fit(X, Y)
    with raises(ValueError, "X has 3 features, but BayesianLinearRegression is expecting 2"):
        reg.predict(torch.randn(4, 3))


def test_estimator_y_must_be_1d():
    with raises(ValueError, "y should be a 1d array, got an array of shape (20, 2) instead"):
        nb.BayesianLinearRegression().fit(X, torch.randn(20, 2))
