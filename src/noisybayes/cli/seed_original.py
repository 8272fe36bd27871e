"""The recipe from the question, kept as written: noise injection trained on MSE.

Every weight is ``loc + abs(sd) * randn()``, drawn afresh for each datum, and the loss is
the mean squared error of the noisy prediction. Because

    E[(y - y_hat)^2] = (y - E[y_hat])^2 + Var[y_hat],

the loss is smallest when every injected sd is zero: SGD shrinks ``b_sd`` by about
``exp(-2 lr E[x^2])`` per step, so the learned sds measure how long training ran, not the
posterior. Compare with ``seed_fixed.py`` (``diff`` the two files).

Run as a script: ``python examples/seed_original.py``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

EPOCHS = (1, 10, 20, 50, 200)
lr = 0.0001


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
    b_mu = torch.tensor([2.0], requires_grad=True)
    b_sd = torch.tensor([1.0], requires_grad=True)
    a_mu = torch.tensor([0.1], requires_grad=True)
    a_sd = torch.tensor([1.0], requires_grad=True)
    sig = torch.tensor([1.0], requires_grad=True)
    sig_mean = torch.tensor([1.0], requires_grad=True)
    return [b_mu, b_sd, a_mu, a_sd, sig, sig_mean]


def model(x, params, generator):
    b_mu, b_sd, a_mu, a_sd, sig, sig_mean = params
    beta = torch.abs(b_sd) * torch.randn(x.shape, generator=generator) + b_mu
    alpha = torch.abs(a_sd) * torch.randn(x.shape, generator=generator) + a_mu
    mu = beta * x + alpha
    sigma = torch.abs(sig) * torch.abs(torch.randn(x.shape, generator=generator)) + sig_mean
    y = torch.abs(sigma) * torch.randn(x.shape, generator=generator) + mu
    return y


def loss_fn(params, x, y, n_data, generator):
    """Mean squared error of one noisy prediction per datum (``n_data`` is unused)."""
    return torch.nn.functional.mse_loss(model(x, params, generator), y)


def snapshot(epoch, params) -> Snapshot:
    """The learned locs and sds; the noise scale is the sd of the injected noise,
    ``sqrt(E[sigma^2])`` with ``sigma = |sig| |z| + sig_mean``, ``z ~ N(0, 1)``."""
    b_mu, b_sd, a_mu, a_sd, sig, sig_mean = (float(p.detach()) for p in params)
    noise = math.sqrt(sig**2 + 2 * abs(sig) * sig_mean * math.sqrt(2 / math.pi) + sig_mean**2)
    return Snapshot(epoch, b_mu, abs(b_sd), a_mu, abs(a_sd), noise)


def make_optimizer(params, n_steps):
    optimizer = torch.optim.SGD(params=params, lr=lr)
    return optimizer, torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)  # constant lr


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
