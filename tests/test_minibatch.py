"""Minibatches: each step's loss is an unbiased estimate of the full-data ELBO."""

from __future__ import annotations

import math

import torch
from torch.distributions import HalfNormal, Normal

import noisybayes as nb
from noisybayes.engine import TensorSource
from noisybayes.infer.fit import _build_family
from noisybayes.infer.laplace import laplace
from noisybayes.infer.objective import LogJoint, elbo_estimate
from noisybayes.model.layout import ParamLayout


def batches(data, batch_size, generator):
    """Endless minibatches of the engine's in-memory source, a fresh permutation per pass."""
    source = TensorSource(*data)
    while True:
        yield from source.epoch(batch_size, generator, drop_last=True)


class Line(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 10.0), shape=(3,))
        self.sigma = nb.param(HalfNormal(torch.tensor(5.0, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, self.sigma)


def _setup(n: int = 240):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) + 2.0
    y = x @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64) + torch.randn(
        n, generator=g, dtype=torch.float64
    )
    model = Line()
    layout = ParamLayout(model)
    log_joint = LogJoint(model, layout)
    mode = laplace(log_joint, ((x,), y), torch.zeros(layout.size, dtype=x.dtype), g, 10_000)
    family = _build_family("fullrank", mode.loc, mode.precision, 2)
    with torch.no_grad():  # move q off the optimum so the gradient is not ~0
        family.loc.add_(0.3)
        family.off_diag.add_(0.1)
    anchor = (mode.loc, log_joint.log_lik_grad(mode.loc, (x,), y))
    return x, y, log_joint, family, anchor


def _gradient(log_joint, family, batch, n_data, draw_seed, anchor=None) -> torch.Tensor:
    family.zero_grad()
    draws = torch.Generator().manual_seed(draw_seed)  # the same draws for every batch
    elbo = elbo_estimate(log_joint, family, batch, n_data, 4, draws, anchor)
    elbo.backward()
    return torch.cat([p.grad.reshape(-1) for p in family.parameters()])


def test_one_epoch_of_minibatch_gradients_averages_to_the_full_gradient():
    """Batches of a permutation partition the data, so the average is exact (SVRG term too)."""
    x, y, log_joint, family, anchor = _setup()
    full = _gradient(log_joint, family, ((x,), y), len(y), draw_seed=5)
    stream = batches(((x,), y), 40, torch.Generator().manual_seed(1))
    grads = [_gradient(log_joint, family, next(stream), len(y), 5, anchor) for _ in range(6)]
    torch.testing.assert_close(torch.stack(grads).mean(0), full, rtol=1e-9, atol=1e-9)


def test_random_minibatch_gradients_are_unbiased_within_monte_carlo_error():
    """Over many random batches (fresh permutations) the mean gradient is within 4 standard
    errors of the full-data gradient in every coordinate (a 4-sigma bound per coordinate)."""
    x, y, log_joint, family, _ = _setup()
    full = _gradient(log_joint, family, ((x,), y), len(y), draw_seed=5)
    stream = batches(((x,), y), 16, torch.Generator().manual_seed(2))
    grads = torch.stack([_gradient(log_joint, family, next(stream), len(y), 5) for _ in range(400)])
    standard_error = grads.std(0) / math.sqrt(len(grads))
    z = (grads.mean(0) - full) / standard_error.clamp_min(1e-12)
    assert z.abs().max() < 4.0, z


def test_batch_size_fit_agrees_with_full_batch_fit():
    x, y, *_ = _setup(n=2000)
    full = nb.fit(Line(), x, y, seed=0, progress=False)
    mini = nb.fit(Line(), x, y, seed=0, progress=False, batch_size=200)
    sd = full.sd["beta"]
    assert ((mini.mean["beta"] - full.mean["beta"]) / sd).abs().max() < 0.1
    assert (mini.sd["beta"] / sd - 1).abs().max() < 0.1
    assert mini.info.batch_size == 200
