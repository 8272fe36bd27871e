"""BNNRegressor / BNNClassifier conventions, divergence, and the coverage of a converted MLP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

import noisybayes as nb
import noisybayes.nn as bnn
from noisybayes.estimators.bnn import _mean_first
from noisybayes.math.families import inverse_softplus
from noisybayes.nn.likelihoods import MeanColumnGaussian
from noisybayes.nn.train import train


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, 1))
    return x, 100 + 20 * np.sin(x[:, 0]) + 3 * rng.standard_normal(n)


@pytest.mark.parametrize(
    "likelihood", ["gaussian", "heteroscedastic", "student_t", "heteroscedastic_student_t"]
)
def test_regressor_follows_the_estimator_contract_on_the_original_scale(likelihood):
    x, y = _toy(200, 0)
    reg = nb.BNNRegressor(hidden=(20,), likelihood=likelihood, n_epochs=300, seed=0)
    assert reg.fit(x, y) is reg
    mean, sd = reg.predict(x[:50], return_std=True)
    assert mean.shape == sd.shape == (50,)
    # targets live around 100 with sd ~15: predictions must be in those units
    assert abs(float(mean.mean()) - y[:50].mean()) < 5 and 1 < float(sd.mean()) < 20
    assert math.isfinite(reg.score(x, y)) and reg.score(x, y) > -5
    assert reg.info_.temperature == 0.5 and reg.info_.n_epochs == 300  # the default
    assert reg.info_.loss_trace.shape == (reg.info_.n_steps,)  # one per-datum loss per step


def test_regressor_errors():
    x, y = _toy(20, 1)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        nb.BNNRegressor().predict(x)
    with pytest.raises(ValueError, match=r"likelihood must be one of .* got 'laplace'"):
        nb.BNNRegressor(likelihood="laplace").fit(x, y)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[20, 19\]"):
        nb.BNNRegressor(n_epochs=1).fit(x, y[:19])
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"Input y contains NaN"):
        nb.BNNRegressor(n_epochs=1).fit(x, bad)
    reg = nb.BNNRegressor(hidden=(3,), n_epochs=1).fit(x, y)
    with pytest.raises(ValueError, match=r"X has 2 features, but BNNRegressor is expecting 1"):
        reg.predict(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"hidden must hold integers >= 1, got \(0,\)"):
        nb.BNNRegressor(hidden=(0,)).fit(x, y)
    for epochs, method in (("3", "auto"), (2.0, "auto"), (2.0, "ivon")):  # IVON: checked
        with pytest.raises(TypeError,  # before its two-part training splits them
                           match=f"n_epochs must be an integer >= 1, got {epochs!r}"):
            nb.BNNRegressor(n_epochs=epochs, method=method).fit(x, y)
    with pytest.raises(ValueError, match=r"df must be None \(learned\) or a finite number > 2 "
                                         r"\(a finite noise variance\), got 1.5"):
        nb.BNNRegressor(likelihood="student_t", df=1.5).fit(x, y)


def test_the_mean_first_start_hands_its_noise_sd_to_the_scale_column():
    """After IVON's first half, every input's noise scale is the start's learned sd."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    likelihood = bnn.HeteroscedasticStudentT(min_scale=0.05)
    learned, calls = 0.37, []

    def run(lik: bnn.Likelihood, epochs: int) -> bnn.NetworkPosterior:
        calls.append((type(lik).__name__, epochs))
        if isinstance(lik, MeanColumnGaussian):  # stands for training: the sd it learned
            with torch.no_grad():
                lik.scale_free.copy_(inverse_softplus(torch.tensor(learned)))
        else:
            with torch.no_grad():
                scales = lik._scale(model(torch.randn(50, 3)))
            torch.testing.assert_close(scales, torch.full((50,), learned))
        info = nb.FitInfo(family="meanfield", n_steps=3 * epochs, converged=False, reason="ran",
                          loss_trace=torch.ones(3 * epochs), n_data=9, batch_size=3,
                          n_samples=1, seconds=1.0, n_epochs=float(epochs))
        return bnn.NetworkPosterior(model, lik, info)

    post = _mean_first(run, model, likelihood, n_epochs=7, start_scale=0.1)
    assert calls == [("MeanColumnGaussian", 3), ("HeteroscedasticStudentT", 4)]
    assert post.likelihood is likelihood
    assert post.info.n_steps == 21 and post.info.n_epochs == 7 and post.info.seconds == 2.0
    assert post.info.loss_trace.shape == (21,)
    assert post.info.reason.startswith("mean-first start: 3 epochs of the mean column")


def test_student_t_degrees_of_freedom_are_learned_unless_given():
    x, y = _toy(100, 3)
    learned = nb.BNNRegressor(hidden=(5,), likelihood="heteroscedastic_student_t", n_epochs=20,
                              n_components=2).fit(x, y)
    assert "df_free" in dict(learned.likelihood_.named_parameters())
    assert learned.likelihood_.df.item() != pytest.approx(5.0)  # moved from its start
    fixed = nb.BNNRegressor(hidden=(5,), likelihood="student_t", df=3.0, n_epochs=2).fit(x, y)
    assert fixed.likelihood_.df.item() == 3.0
    assert "df_free" not in dict(fixed.likelihood_.named_parameters())
    assert repr(fixed) == "BNNRegressor(df=3.0, hidden=(5,), likelihood='student_t', n_epochs=2)"


@pytest.mark.parametrize("method", ["layers", "ivon"])
def test_columns_and_targets_far_from_zero_keep_their_variation(method):
    """The network computes in float32, whose spacing near 1e8 is 8: X and y are centred and
    scaled in float64 first (and predictions shifted back in float64), so a shift by 1e8 of
    a column or of the target changes neither the fit nor the scores (a float32 cast first
    made the column constant, or the target one value). What is left is float64 rounding of
    the 1e8 shift, 1.5e-8 a step (measured up to 3 steps): 2e-7 in the predictions."""
    x, y = _toy(60, 3)
    y = (y - 100.0) / 20.0  # sd about 1, 0.15 noise: each row's value matters
    fits = {}
    for dx, dy in ((0.0, 0.0), (1e8, 0.0), (0.0, 1e8)):
        reg = nb.BNNRegressor(hidden=(5,), method=method, n_epochs=20, seed=0)
        reg.fit(x + dx, y + dy)
        fits[dx, dy] = (reg.predict(x[:10] + dx) - dy, reg.score(x + dx, y + dy))
    (plain, plain_ll), *shifted = fits.values()
    for predicted, ll in shifted:
        np.testing.assert_allclose(predicted, plain, atol=2e-7)
        assert abs(ll - plain_ll) < 1e-6
    with pytest.raises(ValueError, match=r"y must have shape \(60,\) or \(60, 1\), one value "
                                         r"per row of X, got \(30, 2\)"):
        reg.score(x, y.reshape(30, 2))


def test_the_regressor_defaults_to_a_tempered_posterior_and_the_classifier_to_the_posterior():
    """The validation rows' choice for the regressor (``benchmarks/RESULTS.md``), 1 for the
    classifier; a fit records the temperature it used, and 1 is a setting like any other."""
    assert nb.BNNRegressor().get_params()["temperature"] == 0.5
    defaults = nb.BNNRegressor().get_params()  # the rest of the validation rows' choice
    assert defaults["hidden"] == (50, 50) and defaults["method"] == "auto"
    assert defaults["likelihood"] == "heteroscedastic_student_t"
    assert defaults["n_components"] is None  # three for the layers, one for IVON
    assert nb.BNNClassifier().get_params()["n_components"] == 1
    assert nb.BNNClassifier().get_params()["temperature"] == 1.0
    x, y = _toy(40, 0)
    assert nb.BNNRegressor(hidden=(3,), n_epochs=1).fit(x, y).info_.temperature == 0.5
    assert nb.BNNRegressor(hidden=(3,), n_epochs=1, device=None).fit(x, y).predict(x).shape == (40,)
    posterior = nb.BNNRegressor(hidden=(3,), n_epochs=1, temperature=1.0)
    assert repr(posterior) == "BNNRegressor(hidden=(3,), n_epochs=1, temperature=1.0)"
    assert posterior.fit(x, y).info_.temperature == 1.0


def test_classifier_probabilities_labels_and_score():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 2))
    y = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    clf = nb.BNNClassifier(hidden=(10,), n_epochs=40, seed=0).fit(x, y)
    probs = clf.predict_proba(x)
    torch.testing.assert_close(torch.as_tensor(probs).sum(1), torch.ones(200))
    assert list(clf.classes_) == ["no", "yes"]
    assert (clf.predict(x) == y).mean() > 0.9
    state = torch.get_rng_state()  # the intervals' draws come from the seed, as the weights'
    one, two = clf.predict_distribution(x), clf.predict_distribution(x)
    assert torch.equal(one.lower, two.lower) and torch.equal(one.upper, two.upper)
    assert torch.equal(torch.get_rng_state(), state)
    assert -0.4 < clf.score(x, y) < 0  # mean log p(y): far better than log(1/2)
    with pytest.raises(ValueError, match=r"y must hold labels seen in fit \['no', 'yes'\], "
                                         r"got 'maybe'"):
        clf.score(x[:2], ["yes", "maybe"])
    with pytest.raises(ValueError, match=r"y must have shape \(N,\) or \(N, 1\), one label per "
                                         r"row, got \(100, 2\)"):
        clf.score(x, y.reshape(100, 2))
    with pytest.raises(ValueError, match=r"y must hold at least 2 classes, got 1 class: \['yes'\]"):
        nb.BNNClassifier().fit(x[:3], ["yes"] * 3)


def test_a_diverging_loss_raises_naming_the_loss_and_the_epoch():
    torch.manual_seed(0)
    net = nb.bayesian(nn.Linear(1, 1))
    x = torch.randn(16, 1)
    y = torch.full((16, 1), 1e30)  # finite data whose squared error overflows float32
    with pytest.raises(nb.DivergenceError, match=r"loss diverged to inf at epoch 0, step 0"):
        train(net, x, y, likelihood=bnn.Gaussian(), n_epochs=2, batch_size=8)


def test_train_argument_errors():
    net = nb.bayesian(nn.Linear(1, 1))
    x = torch.randn(4, 1)
    with pytest.raises(ValueError, match=r"n_epochs must be an integer >= 1, got 0"):
        train(net, x, x, likelihood=bnn.Gaussian(), n_epochs=0)
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0, got -1"):
        train(net, x, x, likelihood=bnn.Gaussian(), n_epochs=1, learning_rate=-1)
    for run in (train, bnn.train_ivon):  # no rows: named, not a division by zero
        with pytest.raises(ValueError, match=r"^x must have at least one row, got 0$"):
            run(nn.Linear(1, 1) if run is bnn.train_ivon else net, x[:0], x[:0],
                likelihood=bnn.Gaussian(), n_epochs=1)
    with pytest.raises(ValueError, match=r"^model must be a plain network \(IVON holds"):
        bnn.train_ivon(net, x, x, likelihood=bnn.Gaussian(), n_epochs=1)
    with pytest.raises(NotImplementedError) as info:  # torch's error, with the rows noted
        train(net, x.long(), x, likelihood=bnn.Gaussian(), n_epochs=1)
    assert info.value.__notes__ == [
        "noisybayes: raised in the loss (the model's forward pass, likelihood and KL) on rows x "
        "of shape (4, 1) and dtype torch.int64"]


@pytest.mark.slow
def test_converted_mlp_90_percent_interval_covers_about_90_percent():
    """Own training loop with elbo_loss; coverage within 4 binomial sds of 0.9 on 2000 points."""
    torch.manual_seed(0)
    x, y = _toy(500, 3)
    xt, yt = _toy(2000, 4)
    to = lambda a: torch.as_tensor((a - 0.0) / 1.0, dtype=torch.float32)  # noqa: E731
    y_mean, y_sd = y.mean(), y.std()
    net = nb.bayesian(nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Linear(50, 1)))
    lik = bnn.Gaussian()
    opt = torch.optim.Adam([*net.parameters(), *lik.parameters()], lr=1e-2)
    xs, ys = to(x), to((y - y_mean) / y_sd)[:, None]
    for _ in range(300):
        for rows in torch.randperm(500).split(32):
            loss = nb.elbo_loss(net, xs[rows], ys[rows], likelihood=lik, n_data=500)
            opt.zero_grad()
            loss.backward()
            opt.step()
    pred = bnn.predict(net, to(xt), likelihood=lik, n_samples=200, level=0.9)
    z = to((yt - y_mean) / y_sd)[:, None]
    coverage = ((z >= pred.lower) & (z <= pred.upper)).float().mean().item()
    assert abs(coverage - 0.9) < 4 * math.sqrt(0.9 * 0.1 / 2000)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda x, y: nb.BNNRegressor(n_epochs=1).fit(x, np.ones((20, 2))), ValueError,
         r"y should be a 1d array, got an array of shape \(20, 2\) instead"),
        (lambda x, y: nb.BNNRegressor(activation="sigmoid").fit(x, y), ValueError,
         r"activation must be one of 'relu', 'tanh', 'gelu', got 'sigmoid'"),
        (lambda x, y: nb.BNNRegressor(prior_scale=0.0).fit(x, y), ValueError,
         r"prior_scale must be > 0, got 0.0"),
        (lambda x, y: nb.BNNClassifier(n_predict_samples=0).fit(x, y > 100), ValueError,
         r"n_predict_samples must be an integer >= 1, got 0"),
        (lambda x, y: nb.BNNRegressor(device="bogus").fit(x, y), ValueError,
         r"^device must be a device this torch build can use \(e.g. 'cpu'\), got 'bogus': "),
        (lambda x, y: nb.BNNClassifier(device="meta").fit(x, y > 100), ValueError,
         r"^device must be a device that holds values, got 'meta'$"),
        (lambda x, y: nb.BNNClassifier().fit(x, np.zeros((20, 2))), ValueError,
         r"y should be a 1d array, got an array of shape \(20, 2\) instead"),
        (lambda x, y: nb.BNNClassifier().fit(x, np.r_[np.nan, np.ones(19)]), ValueError,
         r"Input y contains NaN"),
        (lambda x, y: nb.BNNRegressor(hidden=(2,), n_epochs=1).fit(x, y).score(x, y[:5]),
         ValueError, r"y must have shape \(20,\) or \(20, 1\), one value per row of X, got "
                     r"\(5,\)"),
        (lambda x, y: nb.BNNClassifier(hidden=(2,), n_epochs=1).fit(x, y > 100).score(x, y[:5] > 0),
         ValueError, r"y must have as many rows as X \(20\), got 5"),
        (lambda x, y: train(nb.bayesian(nn.Linear(1, 1)), torch.ones(4, 1), torch.ones(4, 1),
                            likelihood=bnn.Gaussian(), n_epochs=1, batch_size=0), ValueError,
         r"batch_size must be an integer >= 1, got 0"),
    ],
)
def test_estimator_argument_errors(call, error, message):
    x, y = _toy(20, 5)
    with pytest.raises(error, match=message):
        call(x, y)
