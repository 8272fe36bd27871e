"""``BNNRegressor(method="ivon")``: the exact variational optimum of a linear-Gaussian model
(at ``temperature=1``, the posterior itself), agreement with the layer route, and its argument
errors.

With ``hidden=()`` the network is ``t = b + w z + e``, ``e ~ N(0, s^2)`` on the standardised
data (``z`` centred, so ``Z^T Z`` is diagonal and the mean-field optimum is the exact
posterior). The optimum of the ELBO over ``(b, w)`` and a point noise scale is the fixed
point of ``Lambda = Z^T Z / s^2 + I / prior_scale^2``, ``mu = Lambda^-1 Z^T t / s^2``,
``s^2 = (|t - Z mu|^2 + tr(Z^T Z Lambda^-1)) / N``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import noisybayes as nb
from noisybayes.engine import LinearDecay, TensorSource, Trainer
from noisybayes.estimators.bnn import _BNN
from noisybayes.nn.ivon_train import ivon_hyperparameters
from noisybayes.optim.ivon import posterior_scale

N, NOISE, STEPS, DRAWS = 500, 0.5, 2000, 4000
X_NEW = np.array([[-4.0], [2.0], [9.0]])


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (N, 1))
    return x, 1.0 + 0.8 * x[:, 0] + NOISE * rng.standard_normal(N)


def _fit(method: str) -> nb.BNNRegressor:
    x, y = _data()  # full batches: no minibatch noise, only the weight draws'
    return nb.BNNRegressor(hidden=(), method=method, likelihood="gaussian", batch_size=N,
                           n_epochs=STEPS, n_predict_samples=DRAWS, temperature=1.0,
                           progress=False).fit(x, y)


@pytest.fixture(scope="module")
def ivon() -> nb.BNNRegressor:
    return _fit("ivon")


def _design(reg: nb.BNNRegressor, x: np.ndarray) -> torch.Tensor:
    z = (torch.as_tensor(x, dtype=torch.float64) - reg.x_mean_.double()) / reg.x_scale_.double()
    return torch.cat([torch.ones_like(z), z], 1)


def _optimum(reg: nb.BNNRegressor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(mu, Lambda^-1, s)`` of the ELBO's optimum in ``reg``'s standardised units."""
    x, y = _data()
    Z = _design(reg, x)
    t = (torch.as_tensor(y, dtype=torch.float64) - reg.y_mean_) / reg.y_scale_
    var = torch.tensor(1.0, dtype=torch.float64)
    for _ in range(100):  # a contraction: converges to rounding in a few dozen rounds
        cov = torch.linalg.inv(Z.T @ Z / var + torch.eye(2, dtype=torch.float64) / reg.prior_scale**2)
        mu = cov @ Z.T @ t / var
        var = (((t - Z @ mu) ** 2).sum() + torch.trace(Z.T @ Z @ cov)) / N
    return mu, cov, float(var.sqrt())


def test_ivon_reaches_the_exact_posterior_of_a_linear_gaussian_model(ivon):
    """Tolerances. Scales: ``h`` is a moving average (``beta2 = 1 - 10 / T``) of estimates
    ``h_hat = A eps^2`` (``A`` diagonal here), relative variance 2, so its stationary
    relative sd is ``sqrt(2 (1 - beta2) / (1 + beta2))`` and the scale's half that; 4 of
    them are allowed. Means: at the end a step moves the mean by ``kappa = lr (h_0 + delta)
    / (h + delta) A <= 0.002`` of the way to a draw's Newton target, so the mean fluctuates
    by ``sqrt(kappa / 2) <= 0.03`` posterior sd; 0.2 are allowed. The noise scale, itself
    drawn with sd ``s / sqrt(2N)`` (3 %), fluctuates by ``0.03 * 3 %``; 1 % is allowed."""
    mu, cov, noise = _optimum(ivon)
    post = ivon.posterior_
    assert isinstance(post, nb.nn.IVONPosterior) and post.info.family == "ivon"
    loc = torch.stack([post.locs["0.bias"][0], post.locs["0.weight"][0, 0]]).double()
    scale = torch.stack([post.scales["0.bias"][0], post.scales["0.weight"][0, 0]]).double()
    exact_sd = cov.diagonal().sqrt()
    assert ((loc - mu).abs() < 0.2 * exact_sd).all(), (loc - mu) / exact_sd
    beta2 = 1 - 10 / STEPS
    scale_rel_sd = 0.5 * math.sqrt(2 * (1 - beta2) / (1 + beta2))
    assert ((scale / exact_sd - 1).abs() < 4 * scale_rel_sd).all(), scale / exact_sd
    assert float(ivon.likelihood_.scale.detach()) == pytest.approx(noise, rel=0.01)

    # the predictive, in y's units: mean Z mu, sd sqrt(s^2 + z^T Lambda^-1 z)
    Z = _design(ivon, X_NEW)
    epistemic = ivon.y_scale_ * ((Z @ cov) * Z).sum(1).sqrt()
    mean = ivon.y_mean_ + ivon.y_scale_ * (Z @ mu)
    sd = ivon.y_scale_ * (noise**2 + ((Z @ cov) * Z).sum(1)).sqrt()
    got_mean, got_sd = ivon.predict(X_NEW, return_std=True)
    # mean: the fit's 0.2 sd (above) plus 4 Monte Carlo errors of DRAWS draws
    tol = (0.2 + 4 / math.sqrt(DRAWS)) * epistemic
    assert (torch.as_tensor(got_mean).double() - mean).abs().lt(tol).all()
    # sd: the noise scale's 1 % (the epistemic variance's Monte Carlo error is below 0.1 %)
    torch.testing.assert_close(torch.as_tensor(got_sd).double(), sd, rtol=0.01, atol=0)


def test_ivon_and_the_layers_give_the_same_predictive_distribution(ivon):
    """Both routes fit the same mean-field family (exact here). The layer route's Adam
    leaves its scales less converged after the same steps, and its noise scale absorbs
    the difference, so the comparison is of the predictive: means within 0.25 epistemic
    sd plus 4 Monte Carlo errors of the two means; total sds within 2 %, under the noise
    scale's own posterior sd ``1 / sqrt(2N)`` (3.2 %)."""
    layers = _fit("layers")
    x = X_NEW
    mean_i, sd_i = ivon.predict(x, return_std=True)
    mean_l, sd_l = layers.predict(x, return_std=True)
    epistemic = ivon.predict_distribution(x).epistemic_sd.numpy()
    tol = (0.25 + 4 * math.sqrt(2 / DRAWS)) * epistemic
    assert (np.abs(mean_i - mean_l) < tol).all(), (mean_i - mean_l) / epistemic
    np.testing.assert_allclose(sd_i, sd_l, rtol=0.02)
    x_train, y_train = _data()
    assert ivon.score(x_train, y_train) == pytest.approx(layers.score(x_train, y_train), abs=0.02)


def test_classifier_ivon_predicts_probabilities_from_its_posterior():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    y = np.where(x[:, 0] + x[:, 1] > 0, "a", "b")
    clf = nb.BNNClassifier(hidden=(4,), method="ivon", n_epochs=100, n_predict_samples=50,
                           progress=False).fit(x, y)
    assert isinstance(clf.posterior_, nb.nn.IVONPosterior)
    probs = clf.predict_proba(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (clf.predict(x) == y).mean() > 0.9  # a linearly separable set
    assert clf.posterior_.to_arviz(n_draws=5).posterior_predictive["y"].shape == (1, 5, 60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "foo"}, r"method must be one of 'auto', 'layers', 'ivon', got 'foo'"),
        ({"method": "ivon", "n_components": 3},
         r"n_components must be 1 with method='ivon' \(one optimizer holds one posterior\), got 3"),
        ({"method": "ivon", "init_scale": 2.0},
         r"init_scale must be < prior_scale \(1.0\): the initial posterior is narrower than "
         r"the prior, got 2.0"),
        ({"method": "ivon", "temperature": 0.0}, r"temperature must be > 0, got 0.0"),
    ],
)
def test_method_errors_name_the_argument_and_the_value(kwargs, message):
    x, y = _data()
    with pytest.raises(ValueError, match=message):
        nb.BNNRegressor(n_epochs=1, **kwargs).fit(x[:20], y[:20])


def test_train_ivon_refuses_a_mixture():
    mixture = nb.nn.Mixture([nn.Linear(1, 1), nn.Linear(1, 1)])
    with pytest.raises(ValueError, match="model must not be a Mixture: one IVON optimizer"):
        nb.nn.train_ivon(mixture, torch.zeros(4, 1), torch.zeros(4, 1),
                         likelihood=nb.nn.Gaussian(), n_epochs=1)


def test_hyperparameters_give_the_stated_prior_and_initial_posterior_sd():
    """IVON's sd ``1 / sqrt(ess (h + delta))`` is the prior sd at ``h = 0`` (no data) and
    ``init_scale`` at ``h = hess_init``."""
    ess = 250.0
    delta, hess_init = ivon_hyperparameters(ess, prior_scale=2.0, init_scale=0.1)
    torch.testing.assert_close(posterior_scale(torch.tensor(0.0), delta, ess), torch.tensor(2.0))
    torch.testing.assert_close(posterior_scale(torch.tensor(hess_init), delta, ess),
                               torch.tensor(0.1))


def test_the_loop_takes_each_gradient_at_mc_samples_draws_and_restores_the_means():
    w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    seen: list[torch.Tensor] = []

    class Objective:
        def parameters(self) -> list[torch.Tensor]:
            return [w]

        def loss(self, batch) -> torch.Tensor:
            seen.append(w.detach().clone())
            return ((w - 1.0) ** 2).sum()

    def make(params, lr):
        return nb.optim.IVON(params, lr=lr, ess=4, mc_samples=3,
                             generator=torch.Generator().manual_seed(0))

    trainer = Trainer(Objective(), TensorSource((torch.zeros(4, 1),), torch.zeros(4)),
                      LinearDecay(0.1, 2, 1), batch_size=4, max_steps=2,
                      generator=torch.Generator().manual_seed(1), optimizer=make)
    trainer.run()
    assert len(seen) == 6  # 2 steps of 3 draws
    assert len({tuple(s.tolist()) for s in seen}) == 6  # each a new draw
    assert not any(torch.equal(s, w.detach()) for s in seen)  # the loop ends at the means
    assert trainer.optimizer.state[w]["step"] == 2


def test_the_seed_is_the_only_randomness_and_the_global_generator_is_left_alone():
    x, y = _data()
    state = torch.get_rng_state()

    def fit(seed):
        return nb.BNNRegressor(hidden=(3,), method="ivon", n_epochs=3, seed=seed,
                               n_predict_samples=20, progress=False).fit(x[:50], y[:50])

    first, again, other = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(first.predict(X_NEW), again.predict(X_NEW))
    assert not np.array_equal(first.predict(X_NEW), other.predict(X_NEW))
    one, two = first.predict_distribution(X_NEW), first.predict_distribution(X_NEW)
    for field in ("lower", "upper", "sd"):  # the intervals' own draws come from the seed too
        assert torch.equal(getattr(one, field), getattr(two, field))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("kwargs", "method"),
    [({}, "layers"), ({"likelihood": "gaussian"}, "ivon"),
     ({"likelihood": "gaussian", "n_components": 2}, "layers"),
     ({"likelihood": "student_t"}, "layers"), ({"likelihood": "heteroscedastic"}, "layers"),
     ({"likelihood": "gaussian", "temperature": 0.0}, "layers"),
     ({"likelihood": "gaussian", "init_scale": 1.5}, "layers"),
     ({"likelihood": "gaussian", "method": "layers"}, "layers"), ({"method": "ivon"}, "ivon")],
)
def test_the_regressors_method_is_ivon_where_auto_chose_it_and_it_can_run(kwargs, method):
    """``method="auto"`` (the default) fits IVON for one network with the Gaussian likelihood
    (even with the layers on the validation rows, in about half their time), the layers for
    the heteroscedastic Student-t (the default, where the validation rows chose them), a
    mixture, another likelihood, or settings IVON refuses; ``method_`` says which, and the
    posterior is that route's. The layers default to a mixture of three, IVON to one."""
    x, y = _data()
    reg = nb.BNNRegressor(hidden=(3,), n_epochs=1, **kwargs).fit(x[:20], y[:20])
    assert reg.method_ == method
    # n_components=None (the default): three components for the layers, IVON's one
    assert reg.n_components_ == kwargs.get("n_components", 3 if method == "layers" else 1)
    assert len(getattr(reg.model_, "components", [reg.model_])) == reg.n_components_
    assert isinstance(reg.posterior_, nb.nn.IVONPosterior) == (method == "ivon")


def test_the_classifiers_auto_method_is_the_layers():
    x, y = _data()
    clf = nb.BNNClassifier(hidden=(3,), n_epochs=1, method="auto").fit(x[:20], y[:20] > 0)
    assert clf.method_ == "layers"


def _noise_sd(x: np.ndarray) -> np.ndarray:
    return 0.1 + 0.15 * (x + 3.0)  # 0.1 at x = -3 to 1.0 at x = 3


@pytest.mark.slow
@pytest.mark.parametrize("method", ["auto", "ivon"])
def test_the_regressor_learns_the_noise_sd_of_each_input(method):
    """``BNNRegressor(hidden=(32,))`` at its default method (the layers, heteroscedastic
    Student-t) and by IVON (started from the mean) on ``y = 2 sin(2x) + s(x) e``: the
    aleatoric sd follows ``s(x)`` (a 5.3-fold rise over the grid, where one
    noise scale would give none) within 10% on average (a local estimate from ~600 rows has
    a relative standard error near 4%, so noise alone makes the mean absolute error about
    0.033; measured 0.050 and 0.061: the rest is the smoothing's bias), and its mean follows ``2 sin(2x)`` within a
    quarter of the noise sd on average (a local mean from ~100 rows has a standard error
    near a tenth of it, plus the smoothing's bias)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3.0, 3.0, (2000, 1))
    y = 2.0 * np.sin(2.0 * x[:, 0]) + _noise_sd(x[:, 0]) * rng.standard_normal(2000)
    reg = nb.BNNRegressor(hidden=(32,), method=method, seed=0, progress=False).fit(x, y)
    assert reg.method_ == ("layers" if method == "auto" else "ivon")
    grid = np.linspace(-2.5, 2.5, 21)[:, None]
    pred = reg.predict_distribution(grid)
    truth = _noise_sd(grid[:, 0])
    relative = pred.aleatoric_sd.numpy() / truth - 1.0
    assert np.abs(relative).mean() < 0.10, relative
    rise = float(pred.aleatoric_sd[-1] / pred.aleatoric_sd[0])
    assert 3.5 < rise < 8.0, rise
    error = np.abs(pred.mean.numpy() - 2.0 * np.sin(2.0 * grid[:, 0])) / truth
    assert error.mean() < 0.25, error


class _FromTheStart(nb.BNNRegressor):
    """IVON's regressor without the mean-first start: one run of the whole likelihood (the
    estimators' shared training, as the classifier's)."""

    _train = _BNN._train


@pytest.mark.slow
def test_the_mean_first_start_keeps_the_mean_where_a_noise_scale_per_input_would_absorb_it():
    """A step in the mean (``3 [x_1 > 0]``) plus smooth terms, noise sd 0.1: trained from
    the start, the noise scale per input explains the rows the mean has not yet fitted
    and the mean stops fitting them; started from the mean, the fit's test log-likelihood
    is higher by more than 0.1 per row (the standard error of a difference on 2,000 rows
    is near 0.01) and its mean closer to the truth."""
    rng = np.random.default_rng(0)

    def mean(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] > 0, 3.0, 0.0) + np.sin(3 * x[:, 1]) * x[:, 2] + x[:, 3] ** 2

    x, x_test = rng.uniform(-1, 1, (600, 4)), rng.uniform(-1, 1, (2000, 4))
    y = mean(x) + 0.1 * rng.standard_normal(600)
    y_test = mean(x_test) + 0.1 * rng.standard_normal(2000)
    scores = {}
    for estimator in (nb.BNNRegressor, _FromTheStart):
        reg = estimator(hidden=(32,), method="ivon", seed=0, progress=False).fit(x, y)
        error = float(np.sqrt(np.mean((reg.predict(x_test) - mean(x_test)) ** 2)))
        scores[estimator] = (reg.score(x_test, y_test), error)
    (ll, error), (ll_from_start, error_from_start) = scores.values()
    assert ll > ll_from_start + 0.1, scores
    assert error < error_from_start, scores
