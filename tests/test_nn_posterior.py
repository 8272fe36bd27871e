"""A trained network ends in an ``nb.Posterior``: draws, summary, predictive, ArviZ, check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import noisybayes as nb
import noisybayes.nn as bnn


def _trained(likelihood=None, n_epochs: int = 30):
    torch.manual_seed(0)
    net = nb.bayesian(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)))
    x = torch.randn(64, 2)
    y = x[:, :1].sin() + 0.1 * torch.randn(64, 1)
    lik = likelihood or bnn.Gaussian()
    post = bnn.train(net, x, y, likelihood=lik, n_epochs=n_epochs, batch_size=16,
                     generator=torch.Generator().manual_seed(1))
    return post, net, x, y


def test_training_returns_a_posterior_with_the_shared_info():
    post, net, _, _ = _trained()
    assert isinstance(post, nb.Posterior) and isinstance(post, bnn.NetworkPosterior)
    assert post.network is net
    info = post.info
    assert isinstance(info, nb.FitInfo) and info.n_steps == 30 * 4 and info.n_epochs == 30
    assert info.loss_trace.shape == (info.n_steps,) and not info.converged


def test_draws_have_the_layer_means_and_sds_within_monte_carlo_error():
    """4-sigma bounds per entry: mean within 4 scale/sqrt(n), sd within 4 sd/sqrt(2n)."""
    post, net, _, _ = _trained()
    n = 20_000
    draws = post.sample(n, seed=3)
    assert set(draws) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    layer = net[0]
    w = draws["0.weight"]
    assert w.shape == (n, 8, 2)
    loc, scale = layer.weight_loc.detach(), layer.weight_scale.detach()
    assert ((w.mean(0) - loc) / (scale / math.sqrt(n))).abs().max() < 4
    assert ((w.std(0) / scale - 1) * math.sqrt(2 * n)).abs().max() < 4


def test_summary_has_a_row_per_weight_tensor():
    post, net, _, _ = _trained()
    table = post.summary()
    assert list(table.index) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert table.loc["0.weight", "size"] == 16
    scale = net[0].weight_scale.detach().double()
    assert table.loc["0.weight", "scale_mean"] == pytest.approx(float(scale.mean()), rel=1e-12)
    assert table.loc["0.weight", "scale_max"] == pytest.approx(float(scale.max()), rel=1e-12)


def test_converted_norm_layers_appear_by_their_parameter_names():
    net = nb.bayesian(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    names = [name for name, _, _ in bnn.gaussian_weights(net)]
    assert sorted(names) == ["0.bias", "0.weight", "1.bias", "1.weight"]


def test_predict_gives_one_prediction_type_for_regression_and_classes():
    post, _, x, _ = _trained()
    pred = post.predict(x[:5], n_samples=50, seed=0)
    assert isinstance(pred, nb.Prediction) and pred.probs is None
    assert pred.mean.shape == pred.sd.shape
    torch.testing.assert_close(pred.sd**2, pred.epistemic_sd**2 + pred.aleatoric_sd**2)

    torch.manual_seed(0)
    net = nb.bayesian(nn.Linear(2, 3))
    x = torch.randn(30, 2)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    classes = bnn.train(net, x, y, likelihood=bnn.Categorical(), n_epochs=5)
    pred = classes.predict(x[:4], n_samples=200, seed=0)
    assert pred.probs is not None and pred.probs.shape == (4, 3)
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(4))
    torch.testing.assert_close(pred.mean, pred.probs)  # the mean of the one-hot label
    assert (pred.mutual_information >= 0).all()


def test_to_arviz_exports_predictive_and_log_likelihood_groups():
    post, _, x, y = _trained()
    idata = post.to_arviz(n_draws=40, seed=0)
    assert {"posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert idata.log_likelihood["y"].shape == (1, 40, 64)
    assert idata.posterior_predictive["y"].shape == (1, 40, 64)
    for group in ("observed_data", "posterior_predictive", "log_likelihood"):
        assert idata[group]["y"].dims[-1] == "obs", group
    assert (idata.observed_data["y"].values == y[:, 0].double().numpy()).all()
    assert torch.isfinite(torch.as_tensor(idata.log_likelihood["y"].values)).all()
    held_out = post.to_arviz(x[:10], y[:10], n_draws=20, seed=0)
    assert held_out.log_likelihood["y"].shape == (1, 20, 10)


def test_check_says_why_it_is_not_computed_for_a_network():
    post, *_ = _trained(n_epochs=1)
    with pytest.raises(NotImplementedError, match="not computed for a network.*calibration"):
        post.check()


def test_the_network_estimators_expose_their_posterior():
    x = torch.randn(80, 3)
    y = x[:, 0] * 3 + 10
    reg = nb.BNNRegressor(hidden=(8,), n_components=1, n_epochs=20).fit(x, y)
    assert isinstance(reg.posterior_, nb.Posterior) and reg.info_ is reg.posterior_.info
    assert list(reg.posterior_.summary().index) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    # the default heteroscedastic network was trained on y of shape (N,): predictions (B,)
    assert reg.posterior_.predict(((x - reg.x_mean_) / reg.x_scale_)[:3]).mean.shape == (3,)
    assert reg.posterior_.to_arviz(n_draws=10).log_likelihood["y"].shape == (1, 10, 80)
    mixture = nb.BNNRegressor(hidden=(8,), n_epochs=2).fit(x, y)  # the default: three
    assert list(mixture.posterior_.summary().index)[:2] == ["components.0.0.weight",
                                                            "components.0.0.bias"]
    assert mixture.posterior_.to_arviz(n_draws=10).log_likelihood["y"].shape == (1, 10, 80)
    clf = nb.BNNClassifier(hidden=(8,), n_epochs=5).fit(x, (x[:, 0] > 0).long())
    assert isinstance(clf.posterior_, bnn.NetworkPosterior)
    assert clf.predict_distribution(x[:3]).probs.shape == (3, 2)
