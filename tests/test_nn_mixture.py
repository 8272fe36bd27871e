"""``nb.nn.Mixture``: draws from the mixture, the vectorised objective, and the estimators' option."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import noisybayes as nb
import noisybayes.nn as bnn
from noisybayes.nn.objective import sample_outputs
from noisybayes.nn.priors import SoftplusNormalKL
from noisybayes.nn.train import NetworkObjective, train


def _network(seed: int, n_in: int = 2, prior=None) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(bnn.BayesLinear(n_in, 8, prior=prior), nn.ReLU(),
                         bnn.BayesLinear(8, 1, prior=prior))


def _objective(mixture: bnn.Mixture, lik: bnn.Likelihood | None = None) -> NetworkObjective:
    """The vectorised objective at 40 data rows, one draw, temperature 1."""
    return NetworkObjective(mixture, lik or bnn.Gaussian(0.5), 40, 1, 1.0)


def _mixture(k: int) -> bnn.Mixture:
    return bnn.Mixture([_network(seed) for seed in range(k)])


def _components_at_means(mixture: bnn.Mixture) -> bnn.Mixture:
    """Switch off the components' weight noise; the mixture still picks components."""
    for m in mixture.components.modules():
        if isinstance(m, bnn.NoisyModule):
            m.use_mean = True
    return mixture


def test_each_row_comes_from_one_component_chosen_uniformly():
    mixture = _components_at_means(_mixture(3))
    x = torch.randn(1, 2).expand(6000, 2)
    with torch.no_grad():
        means = torch.stack([c(x[:1]) for c in mixture.components]).reshape(3)
        out = mixture(x).reshape(-1)
    picked = torch.isclose(out[:, None], means[None, :], rtol=1e-5, atol=1e-6)
    assert bool((picked.sum(1) == 1).all())  # every row is exactly one component's output
    share = picked.float().mean(0)
    assert float((share - 1 / 3).abs().max()) < 4 * math.sqrt(1 / 3 * 2 / 3 / 6000)


def test_sample_outputs_gives_each_component_an_equal_stratified_share():
    mixture = _components_at_means(_mixture(2))
    x = torch.randn(4, 2)
    with torch.no_grad():
        draws = sample_outputs(mixture, x, 7)
        first, second = (c(x) for c in mixture.components)
    assert draws.shape == (7, 4, 1)
    torch.testing.assert_close(draws[:3], first.expand(3, 4, 1))
    torch.testing.assert_close(draws[3:6], second.expand(3, 4, 1))
    last = draws[6]  # the remainder: each row from a random component
    assert bool((torch.isclose(last, first) | torch.isclose(last, second)).all())


@pytest.mark.parametrize("priors", ["shared", "equal", "different"])
def test_the_vectorised_objective_is_the_mean_of_the_components_elbos_with_their_gradients(
        priors, monkeypatch):
    """With the noise switched off the loss is deterministic: compare value and gradients.
    Normal priors of equal values (the components' own, or new objects per component) take
    the KL of all components from the stacked tensors in one node outside ``vmap`` (one call
    of the fused node per loss); priors that differ between components are refused (one
    component's modules serve all)."""
    mixture = _components_at_means(_mixture(3))
    if priors != "shared":
        for k, component in enumerate(mixture.components):
            scale = 1.0 + (0.5 * k if priors == "different" else 0.0)
            for layer in (component[0], component[2]):
                layer.prior = torch.distributions.Normal(0.0, scale)
    if priors == "different":  # the vectorised pass evaluates every component with one's
        with pytest.raises(ValueError, match=r"^components must share their layers' priors .*, "
                                             r"got Normal\(loc: 0.0, scale: 1.5\) in layer '0' "
                                             r"of component 1 against component 0's Normal"):
            _objective(mixture)
        return
    x, y = torch.randn(10, 2), torch.randn(10, 1)
    lik = bnn.Gaussian(0.5)
    objective = _objective(mixture, lik)
    calls = []
    fused = SoftplusNormalKL.apply
    monkeypatch.setattr(SoftplusNormalKL, "apply", lambda *a: calls.append(1) or fused(*a))
    loss = objective.loss(((x,), y))
    monkeypatch.undo()
    assert len(calls) == 1  # the stacked KL, outside vmap
    loss.backward()
    separate = [nb.elbo_loss(c, x, y, likelihood=lik, n_data=40) for c in mixture.components]
    torch.testing.assert_close(loss, torch.stack(separate).mean())
    for k, (component, own) in enumerate(zip(mixture.components, separate, strict=True)):
        grads = torch.autograd.grad(own / 3, list(component.parameters()))
        for (name, _), g in zip(component.named_parameters(), grads, strict=True):
            torch.testing.assert_close(objective.stacked[name].grad[k], g)


def test_components_must_share_their_priors():
    """A differing composite prior is refused as well (the vectorised pass would train every
    component under the first one's); equal priors as separate objects, including the
    library's scale mixture and an unchecked Normal, and a component ending in an extra
    parameterless module, are accepted."""
    dist = torch.distributions

    def mixture_prior(scale: float) -> dist.Distribution:
        return dist.MixtureSameFamily(dist.Categorical(torch.tensor([0.5, 0.5])),
                                      dist.Normal(torch.zeros(2), torch.tensor([1.0, scale])))

    def pair(first, second, tail: bool = False) -> bnn.Mixture:
        other = _network(1, prior=second)
        return bnn.Mixture([_network(0, prior=first), other.append(nn.Identity()) if tail
                            else other])

    with pytest.raises(ValueError, match=r"(?s)^components must share their layers' priors .* "
                                         r"in layer '0' of component 1"):
        _objective(pair(mixture_prior(0.01), mixture_prior(5.0)))
    for make in (lambda: bnn.scale_mixture_prior(0.5, 1.0, 0.1),
                 lambda: torch.distributions.Normal(0.0, 1.0, validate_args=False)):
        _objective(pair(make(), make()))
    shared = mixture_prior(0.1)  # one object: any prior
    _objective(pair(shared, shared, tail=True))


def test_training_a_mixture_updates_every_component_and_shares_the_likelihood():
    mixture = _mixture(2)
    before = [c[0].weight_loc.detach().clone() for c in mixture.components]
    x = torch.randn(64, 2)
    y = x[:, :1].sin() + 0.1 * torch.randn(64, 1)
    lik = bnn.Gaussian(1.0)
    info = train(mixture, x, y, likelihood=lik, n_epochs=200, batch_size=64).info
    after = [c[0].weight_loc.detach() for c in mixture.components]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not torch.equal(after[0], after[1])  # the components stay distinct
    assert lik.scale.item() < 0.5 and info.loss_trace[-1] < info.loss_trace[0]


def test_mixture_errors():
    with pytest.raises(ValueError, match="components must hold at least one network, got none"):
        bnn.Mixture([])
    with pytest.raises(ValueError, match="components must share one architecture, got "
                                         "component 1"):
        bnn.Mixture([_network(0), _network(1, n_in=3)])
    with pytest.raises(ValueError, match="model must not be a Mixture"):
        nb.elbo_loss(_mixture(2), torch.randn(4, 2), torch.randn(4, 1),
                     likelihood=bnn.Gaussian(), n_data=4)
    with pytest.raises(ValueError, match=r"n_components must be an integer >= 1, got 0"):
        nb.BNNRegressor(n_components=0).fit(np.ones((5, 1)), np.arange(5.0))


@pytest.mark.parametrize("estimator", ["regressor", "classifier"])
def test_estimators_fit_a_mixture_and_predict_from_all_components(estimator):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (120, 1))
    if estimator == "regressor":
        y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(120)
        model = nb.BNNRegressor(hidden=(10,), n_components=3, n_epochs=300, seed=0).fit(x, y)
        assert model.score(x, y) > 0  # noise sd 0.1: log density about 1.3 per row
    else:
        y = (x[:, 0] > 0).astype(int)
        model = nb.BNNClassifier(hidden=(10,), n_components=3, n_epochs=100, seed=0).fit(x, y)
        assert model.score(x, y) > -0.3
    assert isinstance(model.model_, bnn.Mixture) and len(model.model_) == 3
    first = [c[0].weight_loc for c in model.model_.components]
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(bnn.BayesLinear(2, 4, flipout=True), nn.ReLU(),
                              bnn.BayesLinear(4, 1, flipout=True)),
        lambda: nb.bayesian(nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 1)),
                            include=["1"]),
        lambda: nn.Sequential(nn.Unflatten(1, (1, 1, 2)), bnn.BayesConv2d(1, 1, (1, 2)),
                              nn.Flatten()),
    ],
    ids=["flipout", "generic-noise", "conv2d"],
)
def test_identical_components_draw_their_own_noise_in_every_layer_kind(make):
    """Two copies of one network (whose only noise is of one kind) diverge in training only
    if each draws its own noise."""
    torch.manual_seed(0)
    network = make()
    mixture = bnn.Mixture([network, copy.deepcopy(network)])
    x, y = torch.randn(32, 2), torch.randn(32, 1)
    train(mixture, x, y, likelihood=bnn.Gaussian(), n_epochs=5, batch_size=16)
    first, second = (list(c.parameters()) for c in mixture.components)
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_training_writes_back_every_parameter_and_buffer():
    torch.manual_seed(0)
    make = lambda: nb.bayesian(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4),  # noqa: E731
                                             nn.Linear(4, 1)))
    mixture = bnn.Mixture([make(), make()])
    before = copy.deepcopy(mixture.state_dict())
    x, y = torch.randn(32, 2), torch.randn(32, 1)
    train(mixture, x, y, likelihood=bnn.Gaussian(), n_epochs=3, batch_size=16)
    after = mixture.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(before)  # weights, scales, biases and BatchNorm running statistics
    assert int(after["components.0.1.num_batches_tracked"]) == 6  # 3 epochs x 2 batches
    single = make()
    train(single, x, y, likelihood=bnn.Gaussian(), n_epochs=3, batch_size=16)
    assert int(single[1].num_batches_tracked) == 6


def test_posterior_mean_mode_averages_the_components_mean_outputs():
    mixture = _mixture(3)
    x = torch.randn(5, 2)
    with bnn.posterior_mean(mixture), torch.no_grad():
        expected = torch.stack([c(x) for c in mixture.components]).mean(0)
        torch.testing.assert_close(mixture(x), expected)
        torch.testing.assert_close(mixture(x), mixture(x))
    assert not mixture.use_mean
