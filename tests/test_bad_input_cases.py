"""Bad input to the estimators: each case a clear error of the right type, naming the argument
and what to do; improper or mode-less posteriors said, not answered; interrupted fits leave
the estimator unfitted."""

from __future__ import annotations

import _thread
import signal
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch.distributions import Exponential

import noisybayes as nb

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 2))
Y = X @ np.array([1.0, -2.0]) + RNG.normal(size=30)
LABELS = (X[:, 0] + RNG.normal(size=30) > 0).astype(int)
QUICK = {"max_steps": 50}
KNOWN = {"method": "exact", "noise_scale": 1.0}


def _linear(**params):
    quick = None if params.get("method") == "exact" else QUICK  # exact runs no nb.fit
    return nb.BayesianLinearRegression(fit_options=quick, **params)


def _classifier(**params):
    return nb.BayesianGLMClassifier(fit_options=QUICK, **params)


COLLINEAR = np.c_[X, 2 * X[:, 0] - X[:, 1]]

CASES = [
    # flat priors that leave the posterior improper
    ("flat prior, collinear columns, vi", lambda: _linear(prior_scale=None).fit(COLLINEAR, Y),
     ValueError, ["prior_scale=None", "rank 3 for 4 columns", "prior_scale='auto'"]),
    ("flat prior, collinear columns, exact",
     lambda: _linear(prior_scale=None, noise_prior=None, method="exact").fit(COLLINEAR, Y),
     ValueError, ["prior_scale=None", "collinear", "drop columns"]),
    ("flat prior, collinear columns, known noise",
     lambda: _linear(prior_scale=None, **KNOWN).fit(COLLINEAR, Y),
     ValueError, ["prior_scale=None", "rank 3"]),
    ("flat prior, more columns than rows",
     lambda: _linear(prior_scale=None).fit(X[:5].repeat(3, axis=1), Y[:5]),
     ValueError, ["prior_scale=None", "more columns than rows"]),
    ("flat prior, a constant column and an intercept",
     lambda: _linear(prior_scale=None, **KNOWN).fit(np.c_[X, np.ones(30)], Y),
     ValueError, ["prior_scale=None", "intercept included"]),
    ("flat noise prior, no residual",
     lambda: _linear(noise_prior=None).fit(RNG.normal(size=(6, 8)), Y[:6]),
     ValueError, ["noise_prior=None", "too little information for the noise scale"]),
    ("flat noise prior, one residual row, exact",
     lambda: _linear(prior_scale=None, noise_prior=None, method="exact").fit(X[:4], Y[:4]),
     ValueError, ["noise_prior=None", "got 4 rows and rank 3"]),
    ("flat dispersion prior of a GLM, no residual",
     lambda: nb.BayesianGLM(dispersion_prior=None, fit_options=QUICK).fit(
         RNG.normal(size=(6, 8)), Y[:6]),
     ValueError, ["dispersion_prior=None", "noise scale"]),
    ("student-t noise, more columns than rows",
     lambda: nb.StudentTLinearRegression(fit_options=QUICK).fit(RNG.normal(size=(6, 8)), Y[:6]),
     ValueError, ["family='student_t'", "fits y exactly", "noise_scale"]),
    ("gaussian log link, more columns than rows",
     lambda: nb.BayesianGLM("gaussian", "log", fit_options=QUICK).fit(
         RNG.normal(size=(6, 8)), np.abs(Y[:6])),
     ValueError, ["link='log'", "no mode"]),
    ("y an exact linear function of X", lambda: _linear().fit(X, 2 * X[:, 0] - 1),
     ValueError, ["y must not be an exact linear function of X", "27 rows", "noise_scale"]),
    ("y an exact linear function of X, student-t",
     lambda: nb.StudentTLinearRegression(fit_options=QUICK).fit(X, X[:, 1]),
     ValueError, ["y must not be an exact linear function of X"]),
    ("flat prior, exact fit with a learned noise",
     lambda: _linear(prior_scale=None).fit(RNG.normal(size=(6, 5)), Y[:6]),
     ValueError, ["fits y exactly", "prior_scale"]),
    ("separated classes, flat prior",
     lambda: _classifier(prior_scale=None).fit(X, (X[:, 0] > 0).astype(int)),
     ValueError, ["prior_scale=None", "separat", "prior_scale='auto'"]),
    ("quasi-separated classes, flat prior",
     lambda: _classifier(prior_scale=None).fit(
         np.r_[X, [[0.0, 0.0], [0.0, 0.0]]], np.r_[(X[:, 0] > 0).astype(int), 0, 1]),
     ValueError, ["separat"]),
    # arguments
    ("fit_intercept not a bool", lambda: _linear(fit_intercept="yes").fit(X, Y),
     TypeError, ["fit_intercept must be True or False", "'yes'"]),
    ("an unknown fit option", lambda: nb.BayesianLinearRegression(
        fit_options={"max_stepz": 3}).fit(X, Y),
     TypeError, ["fit_options", "'max_stepz'", "max_steps"]),
    ("fit options not a dict", lambda: nb.BayesianLinearRegression(fit_options=[1]).fit(X, Y),
     TypeError, ["fit_options must be a dict"]),
    ("a fit option that is an estimator argument",
     lambda: nb.BayesianLinearRegression(fit_options={"seed": 1}).fit(X, Y),
     ValueError, ["fit_options must not hold 'seed'"]),
    ("prior_scale negative", lambda: _linear(prior_scale=-1.0).fit(X, Y),
     ValueError, ["prior_scale must be > 0", "-1.0"]),
    ("prior_scale of the wrong kind", lambda: _linear(prior_scale=[1.0, 2.0]).fit(X, Y),
     TypeError, ["prior_scale must be a number > 0", "[1.0, 2.0]"]),
    ("prior_scale an unknown word", lambda: _linear(prior_scale="big").fit(X, Y),
     TypeError, ["prior_scale must be a number > 0", "'big'"]),
    ("noise_prior of the wrong kind", lambda: _linear(noise_prior=3).fit(X, Y),
     TypeError, ["noise_prior must be a torch Distribution", "3"]),
    ("noise_prior of several values",
     lambda: _linear(noise_prior=Exponential(torch.ones(3))).fit(X, Y),
     ValueError, ["noise_prior must be a distribution of one scalar", "(3,)"]),
    ("df_prior of several values", lambda: nb.StudentTLinearRegression(
        df_prior=Exponential(torch.ones(2)), fit_options=QUICK).fit(X, Y),
     ValueError, ["df_prior must be a distribution of one scalar", "(2,)"]),
    ("dispersion_prior of several values", lambda: nb.BayesianGLM(
        "negative_binomial", dispersion_prior=Exponential(torch.ones(2))).fit(X, np.abs(Y) // 1),
     ValueError, ["dispersion_prior must be a distribution of one scalar"]),
    ("noise_scale zero", lambda: _linear(noise_scale=0.0).fit(X, Y),
     ValueError, ["noise_scale must be > 0"]),
    ("method unknown", lambda: _linear(method="mcmc").fit(X, Y),
     ValueError, ["method must be one of", "'mcmc'"]),
    ("variational family unknown", lambda: _linear(family="diag").fit(X, Y),
     ValueError, ["family must be one of", "'diag'"]),
    ("student-t with exact", lambda: nb.StudentTLinearRegression(method="exact").fit(X, Y),
     ValueError, ["method must be 'vi'", "Student-t"]),
    ("GLM family unknown", lambda: nb.BayesianGLM("binomial").fit(X, Y),
     ValueError, ["family must be one of", "'binomial'"]),
    ("GLM family bernoulli", lambda: nb.BayesianGLM("bernoulli").fit(X, LABELS),
     ValueError, ["BayesianGLMClassifier"]),
    ("GLM link unknown", lambda: nb.BayesianGLM("poisson", "identity").fit(X, Y),
     ValueError, ["link must be one of", "'identity'"]),
    ("seed a float", lambda: _linear(seed=1.5).fit(X, Y),
     TypeError, ["seed must be an integer", "1.5"]),
    ("seed a string", lambda: _linear(seed="abc").fit(X, Y),
     TypeError, ["seed must be an integer", "'abc'"]),
    ("seed too large", lambda: _linear(seed=2**70).fit(X, Y),
     ValueError, ["seed must be an integer in [0, 2**64)"]),
    # data
    ("one row", lambda: _linear().fit(X[:1], Y[:1]),
     ValueError, ["1 sample", "minimum of 2"]),
    ("zero columns", lambda: _linear().fit(np.zeros((30, 0)), Y),
     ValueError, ["0 feature", "minimum of 1"]),
    ("NaN in y", lambda: _linear().fit(X, np.r_[Y[:-1], np.nan]),
     ValueError, ["y", "NaN"]),
    ("inf in X", lambda: _linear().fit(np.r_[X[:-1], [[np.inf, 0.0]]], Y),
     ValueError, ["X", "infinity"]),
    ("y of another length", lambda: _linear().fit(X, Y[:-1]),
     ValueError, ["inconsistent numbers of samples", "[30, 29]"]),
    ("y two-dimensional", lambda: _linear().fit(X, np.c_[Y, Y]),
     ValueError, ["y should be a 1d array"]),
    ("X three-dimensional", lambda: _linear().fit(X[:, :, None], Y),
     ValueError, ["dim 3"]),
    ("a text column", lambda: _linear().fit(pd.DataFrame({"a": ["x"] * 30, "b": Y}), Y),
     TypeError, ["X must have numeric columns only", "'a'"]),
    ("negative counts", lambda: nb.BayesianGLM("poisson", fit_options=QUICK).fit(X, Y),
     ValueError, ["y must be a non-negative integer count", "family='poisson'"]),
    ("three classes", lambda: _classifier().fit(X, np.arange(30) % 3),
     ValueError, ["binary", "multiclass"]),
    ("one class", lambda: _classifier().fit(X, np.ones(30)),
     ValueError, ["y must hold 2 classes", "[1.0]"]),
    ("mixed label types", lambda: _classifier().fit(X, np.array([1, "a"] * 15, dtype=object)),
     TypeError, ["y must hold labels of one type", "number", "str"]),
    ("mixed label types, network",
     lambda: nb.BNNClassifier(n_epochs=1).fit(X, np.array([1, "a"] * 15, dtype=object)),
     TypeError, ["y must hold labels of one type"]),
    ("network on one row", lambda: nb.BNNRegressor(n_epochs=1).fit(X[:1], Y[:1]),
     ValueError, ["1 sample", "minimum of 2"]),
    ("network hidden width zero", lambda: nb.BNNRegressor(hidden=0, n_epochs=1).fit(X, Y),
     ValueError, ["hidden must hold integers >= 1", "0"]),
    ("network likelihood unknown",
     lambda: nb.BNNRegressor(likelihood="laplace", n_epochs=1).fit(X, Y),
     ValueError, ["likelihood must be one of", "'laplace'"]),
    ("network df at most 2",
     lambda: nb.BNNRegressor(likelihood="student_t", df=2.0, n_epochs=1).fit(X, Y),
     ValueError, ["df must be None", "> 2"]),
]


@pytest.mark.parametrize(("call", "error", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_fit_input_is_refused_with_a_clear_message(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


FRAME = pd.DataFrame(X, columns=["a", "b"])


@pytest.fixture(scope="module")
def fitted():
    return nb.BayesianLinearRegression(**KNOWN).fit(FRAME, Y)


PREDICT_CASES = [
    ("columns reordered", lambda r: r.predict(FRAME[["b", "a"]]),
     ValueError, ["feature names", "same order"]),
    ("columns renamed", lambda r: r.predict(FRAME.rename(columns={"a": "c"})),
     ValueError, ["feature names", "unseen at fit time", "- c"]),
    ("a column missing", lambda r: r.predict(FRAME[["a"]]),
     ValueError, ["feature names"]),
    ("too many columns", lambda r: r.predict(pd.concat([FRAME, FRAME.add_suffix("2")], axis=1)),
     ValueError, ["feature names", "unseen at fit time", "a2"]),
    ("NaN at predict", lambda r: r.predict(FRAME.assign(a=np.r_[np.nan, X[1:, 0]])),
     ValueError, ["X contains NaN"]),
    ("level above 1", lambda r: r.predict_distribution(FRAME, level=1.5),
     ValueError, ["level must be in (0, 1)", "1.5"]),
    ("level zero", lambda r: r.predict_distribution(FRAME, level=0.0),
     ValueError, ["level must be in (0, 1)"]),
    ("n_samples zero", lambda r: r.predict_distribution(FRAME, n_samples=0),
     ValueError, ["n_samples must be an integer >= 1", "0"]),
    ("hdi_prob above 1", lambda r: r.summary(1.5),
     ValueError, ["hdi_prob must be in (0, 1)", "1.5"]),
    ("to_arviz without y", lambda r: r.to_arviz(FRAME),
     ValueError, ["to_arviz() needs both X and y", "y=None"]),
]


@pytest.mark.parametrize(("call", "error", "words"), [c[1:] for c in PREDICT_CASES],
                         ids=[c[0] for c in PREDICT_CASES])
def test_bad_predict_input_is_refused_with_a_clear_message(fitted, call, error, words):
    with pytest.raises(error) as info:
        call(fitted)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_network_refuses_reordered_columns():
    net = nb.BNNRegressor(hidden=4, n_epochs=1).fit(FRAME, Y)
    with pytest.raises(ValueError, match="feature names"):
        net.predict(FRAME[["b", "a"]])


def test_columns_nearly_collinear_give_the_library_s_error_with_exact():
    """Collinear to rounding: full rank by the rank tolerance, singular to a Cholesky."""
    x = RNG.normal(size=30)
    near = np.c_[x, x + 1e-13 * RNG.normal(size=30)]
    with pytest.raises(ValueError, match="X must have columns far enough from collinear for "
                                         "method='exact'") as info:
        _linear(prior_scale=None, noise_prior=None, method="exact").fit(near, Y)
    assert isinstance(info.value.__cause__, torch.linalg.LinAlgError)


class _Interrupt:
    """An ``nb.fit`` callback that presses Ctrl-C at the end of the first window."""

    def __call__(self, state: object) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_fit_leaves_the_estimator_unfitted():
    reg = nb.BayesianLinearRegression(fit_options={"callback": _Interrupt()})
    with pytest.raises(KeyboardInterrupt):
        reg.fit(X, Y)
    with pytest.raises(NotFittedError):
        reg.predict(X)


def test_an_interrupted_refit_does_not_keep_the_previous_fit():
    reg = nb.BayesianLinearRegression(**KNOWN).fit(X, Y)
    reg.set_params(method="vi", fit_options={"callback": _Interrupt()})
    with pytest.raises(KeyboardInterrupt):
        reg.fit(X[:, :1], Y)
    assert not hasattr(reg, "posterior_") and not hasattr(reg, "coef_")
    with pytest.raises(NotFittedError):
        reg.predict(X[:, :1])


def test_a_network_fit_stopped_by_ctrl_c_is_unfitted():
    """Ctrl-C half a second into a long fit. Python's own SIGINT handler is installed for
    the test: a process started in the background inherits SIGINT ignored, and then the
    simulated Ctrl-C does nothing (the fit ran on towards its 10^6 steps)."""
    net = nb.BNNRegressor(hidden=4, n_epochs=100_000, batch_size=2)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, _thread.interrupt_main)  # Ctrl-C while it trains
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            net.fit(X, Y)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    with pytest.raises(NotFittedError):
        net.predict(X)


_XN, _YN = torch.randn(20, 3), torch.randn(20, 1)


def _net():
    return nb.nn.bayesian(torch.nn.Linear(3, 1))


NN_CASES = [
    ("layer of no inputs", lambda: nb.nn.BayesLinear(0, 2),
     ValueError, ["in_features must be an integer >= 1", "0"]),
    ("layer init_scale negative", lambda: nb.nn.BayesLinear(3, 2, init_scale=-1.0),
     ValueError, ["init_scale must be a finite number > 0", "-1.0"]),
    ("layer prior not a distribution", lambda: nb.nn.BayesLinear(3, 2, prior=3),
     TypeError, ["prior must be a torch.distributions.Distribution", "3"]),
    ("bayesian of a number", lambda: nb.nn.bayesian(3),
     TypeError, ["module must be a torch.nn.Module", "int"]),
    ("likelihood scale negative", lambda: nb.nn.Gaussian(-1.0),
     ValueError, ["scale must be a finite number > 0", "-1.0"]),
    ("mixture of nothing", lambda: nb.nn.Mixture([]),
     ValueError, ["components must hold at least one network"]),
    ("elbo n_data zero",
     lambda: nb.nn.elbo_loss(_net(), _XN, _YN, n_data=0, likelihood=nb.nn.Gaussian()),
     ValueError, ["n_data must be an integer >= 1", "0"]),
    ("elbo n_data below the batch",
     lambda: nb.nn.elbo_loss(_net(), _XN, _YN, n_data=5, likelihood=nb.nn.Gaussian()),
     ValueError, ["n_data must be >= the batch size 20", "5"]),
    ("train for no epochs",
     lambda: nb.nn.train(_net(), _XN, _YN, likelihood=nb.nn.Gaussian(), n_epochs=0),
     ValueError, ["n_epochs must be an integer >= 1", "0"]),
    ("train with empty batches", lambda: nb.nn.train(
        _net(), _XN, _YN, likelihood=nb.nn.Gaussian(), n_epochs=1, batch_size=0),
     ValueError, ["batch_size must be an integer >= 1"]),
    ("train with a negative step", lambda: nb.nn.train(
        _net(), _XN, _YN, likelihood=nb.nn.Gaussian(), n_epochs=1, learning_rate=-1.0),
     ValueError, ["learning_rate must be a finite number > 0"]),
    ("train with a negative temperature", lambda: nb.nn.train(
        _net(), _XN, _YN, likelihood=nb.nn.Gaussian(), n_epochs=1, temperature=-1.0),
     ValueError, ["temperature must be a finite number >= 0"]),
    ("train with a likelihood named, not built",
     lambda: nb.nn.train(_net(), _XN, _YN, likelihood="gaussian", n_epochs=1),
     TypeError, ["likelihood must be a nb.nn.Likelihood object", "nb.nn.Gaussian()",
                 "'gaussian'"]),
    ("train rows differ",
     lambda: nb.nn.train(_net(), _XN, _YN[:-1], likelihood=nb.nn.Gaussian(), n_epochs=1),
     ValueError, ["y must have as many rows as x (20)", "19"]),
    ("train on NaN", lambda: nb.nn.train(
        _net(), _XN, _YN * float("nan"), likelihood=nb.nn.Gaussian(), n_epochs=1),
     ValueError, ["y must be finite", "nan"]),
    ("predict with no draws",
     lambda: nb.nn.predict(_net(), _XN, n_samples=0, likelihood=nb.nn.Gaussian()),
     ValueError, ["n_samples must be an integer >= 2", "0"]),
    ("predict at level 1.5",
     lambda: nb.nn.predict(_net(), _XN, level=1.5, likelihood=nb.nn.Gaussian()),
     ValueError, ["level must be in (0, 1)", "1.5"]),
]


@pytest.mark.parametrize(("call", "error", "words"), [c[1:] for c in NN_CASES],
                         ids=[c[0] for c in NN_CASES])
def test_bad_network_input_is_refused_with_a_clear_message(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
