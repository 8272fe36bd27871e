"""nb.nn.predict: moments against closed forms, classification entropies, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import noisybayes as nb
import noisybayes.nn as bnn

Z = 5.0


def test_regression_moments_of_one_bayes_linear_layer_match_the_closed_form():
    """y = x.w + b + noise: E = x.loc + b_loc, Var_epi = x^2.scale^2 + b_scale^2, Var_ale = s^2."""
    torch.manual_seed(0)
    layer = bnn.BayesLinear(3, 1, init_scale=1.0, dtype=torch.float64)
    lik = bnn.Gaussian(0.4)
    x = torch.randn(4, 3, dtype=torch.float64)
    n = 20_000
    pred = bnn.predict(layer, x, likelihood=lik, n_samples=n,
                       generator=torch.Generator().manual_seed(1))
    assert isinstance(pred, nb.Prediction) and pred.mean.shape == (4, 1)
    mean = (x @ layer.weight_loc.T + layer.bias_loc).detach()
    epi = (x.square() @ layer.weight_scale.square().T + layer.bias_scale.square()).detach()
    # the mean of n Gaussian draws has se sqrt(epi/n); a sample variance var*sqrt(2/(n-1))
    assert ((pred.mean - mean).abs() < Z * (epi / n).sqrt()).all()
    assert ((pred.epistemic_sd.square() - epi).abs() < Z * epi * math.sqrt(2 / (n - 1))).all()
    torch.testing.assert_close(pred.aleatoric_sd, torch.full((4, 1), 0.4, dtype=torch.float64))
    torch.testing.assert_close(pred.sd.square(), epi.new_tensor(0.16) + pred.epistemic_sd**2)
    # the 90% interval of N(mean, sd^2): mean -+ 1.645 sd, up to quantile error of 2000 draws
    assert ((pred.upper - pred.lower) / (2 * 1.6449 * pred.sd) - 1).abs().max() < 0.1


def test_the_same_generator_gives_the_same_prediction_and_modes_are_restored():
    net = nb.bayesian(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    net.train()
    x = torch.randn(3, 2)
    a = bnn.predict(net, x, likelihood=bnn.Gaussian(), generator=torch.Generator().manual_seed(5))
    b = bnn.predict(net, x, likelihood=bnn.Gaussian(), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.mean, b.mean)
    assert net.training


def test_classification_entropy_splits_into_mutual_information_and_expected_entropy():
    torch.manual_seed(2)
    net = nb.bayesian(nn.Linear(3, 4), init_scale=3.0)
    pred = bnn.predict(net, torch.randn(6, 3), likelihood="categorical", n_samples=500)
    assert isinstance(pred, nb.Prediction) and pred.probs is not None
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(6))
    torch.testing.assert_close(pred.entropy, pred.mutual_information + pred.expected_entropy)
    assert (pred.mutual_information > 0).all() and (pred.entropy <= math.log(4) + 1e-6).all()


def test_with_zero_posterior_variance_the_mutual_information_is_zero():
    net = nb.bayesian(nn.Linear(3, 1))
    with torch.no_grad():
        net.weight_scale_free.fill_(-float("inf"))
        net.bias_scale_free.fill_(-float("inf"))
    pred = bnn.predict(net, torch.randn(5, 3), likelihood="bernoulli", n_samples=10)
    assert pred.probs.shape == (5,)
    torch.testing.assert_close(pred.mutual_information, torch.zeros(5))


def test_generic_noise_models_draw_once_per_sample():
    emb = nb.bayesian(nn.Embedding(5, 1), init_scale=1.0)
    pred = bnn.predict(emb, torch.tensor([0, 1]), likelihood=bnn.Gaussian(), n_samples=50)
    assert (pred.epistemic_sd > 0.3).all()  # sd 1 per entry; shared noise would give 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_samples": 1}, r"n_samples must be an integer >= 2, got 1"),
        ({"level": 1.5}, r"level must be in \(0, 1\), got 1.5"),
        ({"x": torch.tensor([[float("nan"), 0.0]])}, r"x must be finite"),
        ({"likelihood": bnn.HeteroscedasticGaussian()},
         r"^output must end in 2 columns for HeteroscedasticGaussian \(mean and raw scale\), "
         r"got shape \(100, 2, 1\)$"),
    ],
)
def test_predict_errors(changes, message):
    args = {"x": torch.randn(2, 2), "likelihood": bnn.Gaussian()}
    args.update(changes)
    with pytest.raises(ValueError, match=message):
        bnn.predict(nb.bayesian(nn.Linear(2, 1)), args.pop("x"), **args)


def test_rows_the_model_refuses_keep_torchs_error_with_their_shape_noted():
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes") as info:
        bnn.predict(nb.bayesian(nn.Linear(2, 1)), torch.randn(2, 3), likelihood=bnn.Gaussian(),
                    n_samples=np.int64(10))  # numpy's integers are integers
    assert info.value.__notes__ == [
        "noisybayes: raised drawing the model's outputs on rows x of shape (2, 3) and dtype "
        "torch.float32"]


def test_float64_rows_are_predicted_by_a_float32_network_as_float32_rows():
    net, x = nb.bayesian(nn.Linear(2, 1)), torch.randn(5, 2)
    one = bnn.predict(net, x, likelihood=bnn.Gaussian(), generator=torch.Generator().manual_seed(0))
    two = bnn.predict(net, x.double(), likelihood=bnn.Gaussian(),
                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(one.mean, two.mean) and torch.equal(one.sd, two.sd)


def test_fields_follow_the_targets_shape():
    """A network ending in one output column, trained on a ``(N,)`` target: the posterior's
    predictions are ``(B,)``; ``nb.nn.predict`` says so with ``target_shape=()`` and gives
    the same numbers as the ``(B, 1)`` fields from the same draws."""
    torch.manual_seed(0)
    net = nb.bayesian(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)))
    x = torch.randn(64, 2)
    y = x[:, 0].sin() + 0.1 * torch.randn(64)
    post = bnn.train(net, x, y, likelihood=bnn.Gaussian(), n_epochs=3, batch_size=16,
                     generator=torch.Generator().manual_seed(1))
    pred = post.predict(x[:5], n_samples=20, seed=0)
    assert pred.mean.shape == pred.sd.shape == pred.lower.shape == (5,)

    def run(**kwargs):
        return bnn.predict(net, x[:5], likelihood=post.likelihood, n_samples=20,
                           generator=torch.Generator().manual_seed(3), **kwargs)

    column, flat = run(), run(target_shape=())
    assert column.mean.shape == (5, 1) and flat.mean.shape == (5,)
    torch.testing.assert_close(flat.mean, column.mean[:, 0])
    torch.testing.assert_close(flat.epistemic_sd, column.epistemic_sd[:, 0])
    assert run(target_shape=(1,)).mean.shape == (5, 1)
    with pytest.raises(ValueError, match=r"^target_shape must fit the model output as the "
                       r"likelihood's targets do, got target_shape=\(3,\) for outputs of "
                       r"shape \(5, 1\)$"):
        run(target_shape=(3,))


def test_eval_mode_still_draws_weights_and_posterior_mean_does_not():
    """What the README says: ``net.eval()`` leaves the weight noise on; ``posterior_mean``
    gives one deterministic network, the output at the weights' means, until the block ends."""
    torch.manual_seed(0)
    net = nb.bayesian(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))).eval()
    x = torch.randn(3, 2)
    assert not torch.equal(net(x), net(x))
    with bnn.posterior_mean(net):
        at_mean = net(x)
        assert torch.equal(at_mean, net(x))
    first, last = net[0], net[2]
    hidden = torch.tanh(x @ first.weight_loc.T + first.bias_loc)
    torch.testing.assert_close(at_mean, hidden @ last.weight_loc.T + last.bias_loc)
    assert not torch.equal(net(x), net(x))
