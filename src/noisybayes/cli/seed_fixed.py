"""The recipe from the question with the fixes that make it variational inference.

1. The model returns the likelihood ``Normal(mu, sigma)`` of ``y`` with a learned noise
   scale, and the loss is its negative log-density instead of the MSE of a noisy guess.
2. The loss adds ``KL(q || prior) / n_data``: the whole objective is the negative ELBO per
   datum, ``-(1/B) sum_batch E_q[log p(y|x, w)] + KL(q(w) || p(w)) / N``, an unbiased
   minibatch estimate of ``-ELBO / N``. The entropy inside the KL keeps the sds from
   collapsing.
3. Scales are ``softplus`` of free variables (no kink or sign symmetry as with ``abs``).
4. Each datum's weights are drawn in antithetic pairs ``(eps, -eps)``, which cancels the
   residual's share of the gradient noise, and Adam with a cosine-decaying step replaces
   plain SGD, which moves a small softplus scale very slowly.

The learned sds converge to the mean-field optimum, which for a centred predictor is the
exact posterior sd. Compare with ``seed_original.py`` (``diff`` the two files).

Run as a script: ``python examples/seed_fixed.py``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

EPOCHS = (1, 10, 20, 50, 200)
lr = 0.2


class Snapshot(NamedTuple):
    """The learned parameters after ``epoch`` passes over the data."""

    epoch: int
    slope_loc: float
    slope_scale: float
    intercept_loc: float
    intercept_scale: float
    noise_scale: float


def make_data(n: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy line: ``x ~ U(-5, 5)``, ``y = 1.0 + 3.0 x + 2.0 eps``, ``eps ~ N(0, 1)``."""
    generator = torch.Generator().manual_seed(seed)
    x = 10.0 * torch.rand(n, generator=generator) - 5.0
    y = 1.0 + 3.0 * x + 2.0 * torch.randn(n, generator=generator)
    return x, y


def init_params() -> list[torch.Tensor]:
    one = math.log(math.e - 1.0)  # softplus(one) == 1.0
    b_mu = torch.tensor([2.0], requires_grad=True)
    b_rho = torch.tensor([one], requires_grad=True)
    a_mu = torch.tensor([0.1], requires_grad=True)
    a_rho = torch.tensor([one], requires_grad=True)
    sig_rho = torch.tensor([one], requires_grad=True)
    return [b_mu, b_rho, a_mu, a_rho, sig_rho]


def model(x, params, generator):
    b_mu, b_rho, a_mu, a_rho, sig_rho = params
    eps = torch.randn((2, *x.shape), generator=generator)
    eps, x = torch.cat([eps, -eps], dim=1), torch.cat([x, x])  # antithetic pairs
    beta = F.softplus(b_rho) * eps[0] + b_mu
    alpha = F.softplus(a_rho) * eps[1] + a_mu
    mu = beta * x + alpha
    sigma = F.softplus(sig_rho)
    return Normal(mu, sigma)


PRIOR = Normal(0.0, 10.0)


def loss_fn(params, x, y, n_data, generator):
    """The negative ELBO per datum: batch mean of ``-log p(y|x, w)`` plus ``KL / n_data``."""
    b_mu, b_rho, a_mu, a_rho, sig_rho = params
    q = Normal(torch.cat([b_mu, a_mu]), F.softplus(torch.cat([b_rho, a_rho])))
    kl = kl_divergence(q, PRIOR).sum()
    return -model(x, params, generator).log_prob(torch.cat([y, y])).mean() + kl / n_data


def snapshot(epoch, params) -> Snapshot:
    """The learned locs and sds (softplus of the free variables)."""
    b_mu, b_rho, a_mu, a_rho, sig_rho = (p.detach() for p in params)
    b_sd, a_sd, sigma = (float(F.softplus(r)) for r in (b_rho, a_rho, sig_rho))
    return Snapshot(epoch, float(b_mu), b_sd, float(a_mu), a_sd, sigma)


def make_optimizer(params, n_steps):
    optimizer = torch.optim.Adam(params=params, lr=lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps)


def train(x, y, epochs=EPOCHS, batch_size=32, seed=0) -> list[Snapshot]:
    """Minibatch training; the parameters after each epoch listed in ``epochs``."""
    generator = torch.Generator().manual_seed(seed)
    params = init_params()
    n_steps = max(epochs) * math.ceil(len(x) / batch_size)
    optimizer, schedule = make_optimizer(params, n_steps)
    history = []
    for epoch in range(1, max(epochs) + 1):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(params, x[batch], y[batch], len(x), generator)
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch in epochs:
            history.append(snapshot(epoch, params))
    return history


if __name__ == "__main__":
    x, y = make_data()
    for row in train(x, y):
        print(
            f"epoch {row.epoch:>3}: slope {row.slope_loc:.3f} ± {row.slope_scale:.4f}, "
            f"intercept {row.intercept_loc:.3f} ± {row.intercept_scale:.4f}, "
            f"noise {row.noise_scale:.3f}"
        )
