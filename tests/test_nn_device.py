"""Converted models under ``torch.compile`` and on a GPU; the estimators on a GPU.

The GPU tests skip without CUDA; ``torch.compile`` on the CPU uses the ``aot_eager``
backend (graph capture and autograd tracing without a C++ toolchain).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import noisybayes as nb
import noisybayes.nn as bnn
from tests.test_nn_convert import TextModel

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _text_data(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 12, (256, 3), generator=gen)
    y = (tokens.float().mean(1) - 5.5) / 3 + 0.1 * torch.randn(256, generator=gen)
    return tokens.to(device), y.to(device)


def _train(model: nn.Module, lik: bnn.Likelihood, x: torch.Tensor, y: torch.Tensor,
           steps: int, reference: nn.Module | None = None) -> tuple[float, float]:
    """Adam on ``elbo_loss``; the mean loss over the first and the last 20 steps."""
    target = reference if reference is not None else model
    opt = torch.optim.Adam([*target.parameters(), *lik.parameters()], lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = nb.elbo_loss(model, x, y, likelihood=lik, n_data=len(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses[:20])), float(np.mean(losses[-20:]))


def _check_compiled(device: str, backend: str) -> None:
    torch.manual_seed(0)
    model = bnn.bayesian(TextModel()).to(device)
    compiled = torch.compile(model, backend=backend)
    tokens, y = _text_data(device)
    with bnn.posterior_mean(model), torch.no_grad():
        torch.testing.assert_close(compiled(tokens), model(tokens))
    assert not torch.equal(compiled(tokens), compiled(tokens))  # the noise survives tracing
    first, last = _train(compiled, bnn.Gaussian().to(device), tokens, y, 200, reference=model)
    assert math.isfinite(last) and last < first - 0.3


def test_a_compiled_converted_model_matches_the_eager_one_and_trains():
    _check_compiled("cpu", "aot_eager")


@needs_cuda
def test_a_compiled_converted_model_trains_on_the_gpu():
    _check_compiled("cuda", "inductor")


@needs_cuda
def test_a_converted_model_with_embedding_and_norm_trains_and_predicts_on_the_gpu():
    torch.manual_seed(0)
    model = bnn.bayesian(TextModel()).cuda()
    tokens, y = _text_data("cuda")
    lik = bnn.Gaussian().cuda()
    first, last = _train(model, lik, tokens, y, 300)
    assert last < first - 0.3
    pred = bnn.predict(model, tokens, likelihood=lik, n_samples=50)
    assert pred.mean.device.type == "cuda" and bool((pred.sd > 0).all())
    assert float(((pred.mean - y) ** 2).mean().sqrt()) < 0.3  # the signal has sd ~0.5


@needs_cuda
def test_bayes_conv2d_runs_forward_kl_and_backward_on_the_gpu():
    layer = bnn.BayesConv2d(3, 4, 3).cuda()
    x = torch.randn(8, 3, 10, 10, device="cuda")
    out = layer(x)
    (out.square().mean() + layer.kl() / 100).backward()
    assert out.shape == (8, 4, 8, 8) and layer.weight_loc.grad.device.type == "cuda"


@needs_cuda
@pytest.mark.parametrize("n_components", [1, 3])
def test_the_regressor_trains_on_the_gpu_as_on_the_cpu_and_returns_cpu_results(n_components):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (300, 1))
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(300)
    scores = {}
    for device in ("cpu", "cuda"):
        reg = nb.BNNRegressor(hidden=(20,), n_components=n_components, n_epochs=1500,
                              batch_size=300, device=device, seed=0).fit(x, y)
        mean, sd = reg.predict(x, return_std=True)
        assert mean.device.type == "cpu" and sd.device.type == "cpu"
        scores[device] = reg.score(x, y)
    # the noise sd is 0.1, so a converged fit scores about 0.9; the two devices draw
    # different weight noise, so they agree up to the fit's seed-to-seed spread
    assert scores["cuda"] > 0.6 and abs(scores["cuda"] - scores["cpu"]) < 0.15


@needs_cuda
def test_the_heteroscedastic_student_t_regressor_runs_on_the_gpu():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, (300, 1))
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_t(4, 300)
    reg = nb.BNNRegressor(hidden=(20,), likelihood="heteroscedastic_student_t", n_components=2,
                          n_epochs=200, batch_size=300, device="cuda", seed=0).fit(x, y)
    assert reg.likelihood_.df.device.type == "cuda" and reg.likelihood_.df.item() > 2
    mean, sd = reg.predict(x, return_std=True)
    assert mean.device.type == "cpu" and bool(torch.isfinite(sd).all() and (sd > 0).all())
    assert math.isfinite(reg.score(x, y))
