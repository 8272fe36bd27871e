"""nb.bayesian: per-parameter conversion, deterministic exclusions, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import noisybayes.nn as bnn


class TextModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.emb(tokens)).mean(1)).squeeze(-1)


def test_embedding_and_layer_norm_get_weight_noise_and_linear_layers_get_bayes_linear():
    torch.manual_seed(0)
    original = TextModel()
    model = bnn.bayesian(original, exclude=["head.2"])
    assert parametrize.is_parametrized(model.emb, "weight")
    assert parametrize.is_parametrized(model.norm, "weight")
    assert parametrize.is_parametrized(model.norm, "bias")
    assert isinstance(model.head[0], bnn.BayesLinear)
    assert type(model.head[2]) is nn.Linear  # excluded: untouched and deterministic
    torch.testing.assert_close(model.head[2].weight, original.head[2].weight)
    tokens = torch.randint(0, 12, (5, 3))
    assert not torch.equal(model(tokens), model(tokens))  # noisy
    with bnn.posterior_mean(model):  # at the means it is the original network
        torch.testing.assert_close(model(tokens), original(tokens))
    kl = bnn.kl_divergence(model)
    kl.backward()
    noise = model.emb.parametrizations.weight[0]
    assert noise.scale_free.grad is not None and model.head[2].weight.grad is None


def test_the_original_module_is_untouched():
    original = TextModel()
    before = {n for n, _ in original.named_parameters()}
    bnn.bayesian(original)
    assert {n for n, _ in original.named_parameters()} == before
    assert not parametrize.is_parametrized(original.emb)


def test_sequential_stays_a_sequential_and_keeps_the_means():
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    model = bnn.bayesian(seq, flipout=True)
    assert isinstance(model, nn.Sequential)
    assert isinstance(model[0], bnn.BayesConv2d) and model[3].flipout
    x = torch.randn(4, 1, 4, 4)
    assert model(x).shape == (4, 3)
    with bnn.posterior_mean(model):
        torch.testing.assert_close(model(x), seq(x))


def test_include_selects_parameters_and_the_bias_alone_can_stay_fixed():
    model = bnn.bayesian(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)), include=["0.weight"])
    assert isinstance(model[0], bnn.BayesLinear) and model[0].bias_scale is None
    assert type(model[1]) is nn.Linear


def test_a_bare_linear_is_converted():
    model = bnn.bayesian(nn.Linear(3, 2))
    assert isinstance(model, bnn.BayesLinear)


def test_attention_with_linear_subclasses_gets_generic_noise_and_runs():
    torch.manual_seed(2)
    attn = nn.MultiheadAttention(4, 2, batch_first=True)
    model = bnn.bayesian(attn)
    x = torch.randn(2, 3, 4)
    out, _ = model(x, x, x)
    assert out.shape == (2, 3, 4)
    assert parametrize.is_parametrized(model.out_proj, "weight")
    assert torch.isfinite(bnn.kl_divergence(model))


@pytest.mark.parametrize("arg", ["include", "exclude"])
def test_unknown_names_raise_naming_them(arg):
    with pytest.raises(ValueError, match=rf"{arg} must name .* got unknown \['head.9', 'nope'\]"):
        bnn.bayesian(TextModel(), **{arg: ["head.9", "nope", "emb"]})


def test_a_model_bayesian_already_is_refused_where_it_would_be_converted_again():
    """Noise on a Bayesian layer's own means and scales is never meant: refused, naming
    them; the plain parts of a partly Bayesian model are converted with those excluded."""
    once = nn.Sequential(bnn.bayesian(nn.Embedding(5, 2)), nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"^module must not be Bayesian already where it is "
                       r"converted, got 2 parameter\(s\) of Bayesian layers \(0\.parametriz"):
        bnn.bayesian(once)
    twice = bnn.bayesian(once, exclude="0")
    assert isinstance(twice[1], bnn.BayesLinear) and len(list(twice.parameters())) == 6


def test_a_prior_off_the_real_line_is_refused_and_a_mixture_on_it_is_not():
    with pytest.raises(ValueError, match=r"^prior must be a distribution on the real line"):
        bnn.bayesian(nn.Linear(2, 1), prior=torch.distributions.HalfNormal(1.0))
    D = torch.distributions
    mixture = D.MixtureSameFamily(D.Categorical(torch.ones(2)),
                                  D.Normal(torch.zeros(2), torch.tensor([1.0, 0.1])))
    net = bnn.bayesian(nn.Linear(2, 1), prior=mixture)  # a wrapped real support
    assert torch.isfinite(bnn.kl_divergence(net))


def test_a_non_module_is_rejected():
    with pytest.raises(TypeError, match=r"module must be a torch.nn.Module, got list"):
        bnn.bayesian([nn.Linear(1, 1)])


def test_kl_of_a_model_without_bayesian_parameters_raises():
    with pytest.raises(ValueError, match=r"model must have Bayesian parameters .* Linear"):
        bnn.kl_divergence(nn.Linear(2, 2))
