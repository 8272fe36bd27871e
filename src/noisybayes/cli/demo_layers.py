"""``noisybayes demo --layers``: noise on layer outputs against a Bayesian network.

A small nonlinear regression, ``y = sin(2 x) + x / 2 + 0.2 eps``, with ``x`` drawn from two
clusters, ``[-3, -GAP]`` and ``[GAP, 3]``, so that the middle has no data. One network
(``1 -> 50 -> 1``, tanh) is trained four ways by ``nb.nn.train`` with the same steps:

1. ``nothing``: the likelihood alone;
2. ``dropout``: ``nn.Dropout(P)`` on the hidden layer's outputs;
3. ``output noise``: ``nb.nn.GaussianNoise(NOISE_SCALE)`` added to the hidden layer's outputs;
4. ``Bayesian``: ``nb.bayesian`` of the same network, the ELBO with ``Normal(0, 1)`` priors.

All four learn one Gaussian noise scale. The first three are regularisers, evaluated with
the noise off: their 94% band is ``f(x) +- 1.88 noise scale``. The Bayesian network's band
is its posterior predictive (weight draws and noise). Mean-field VI pays about
``log(1 / posterior sd)`` nats of KL per weight, so with too few rows for its weights (two
hidden layers here, or a few hundred points) it buys a smooth fit instead of an accurate
one; hence one hidden layer and 1000 points. ``run_layers_demo`` returns the
curves and numbers and sentences computed from them; it prints nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from noisybayes.nn.convert import bayesian
from noisybayes.nn.likelihoods import Gaussian
from noisybayes.nn.noise import GaussianNoise
from noisybayes.nn.predict import predict
from noisybayes.nn.train import train

__all__ = ["LayerFit", "LayersDemoResult", "run_layers_demo"]

N_POINTS, NOISE_SD, GAP = 1000, 0.2, 1.0
P, NOISE_SCALE, WIDTHS = 0.1, 0.3, (1, 50)
FULL_EPOCHS, QUICK_EPOCHS, LEARNING_RATE = 2000, 300, 3e-2


def truth(x: torch.Tensor) -> torch.Tensor:
    """The regression function ``f(x) = sin(2 x) + x / 2``."""
    return torch.sin(2 * x) + x / 2


def make_data(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``N_POINTS`` rows ``(x, y)``, ``x`` uniform on ``[-3, -GAP]`` and ``[GAP, 3]``."""
    side = torch.where(torch.rand(N_POINTS, generator=generator) < 0.5, -1.0, 1.0)
    x = side * (GAP + (3 - GAP) * torch.rand(N_POINTS, generator=generator))
    y = truth(x) + NOISE_SD * torch.randn(N_POINTS, generator=generator)
    return x[:, None], y[:, None]


def _network(noise: Callable[[], nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width_in, width_out in zip(WIDTHS[:-1], WIDTHS[1:], strict=True):
        layers += [nn.Linear(width_in, width_out), nn.Tanh()]
        if noise is not None:
            layers.append(noise())
    return nn.Sequential(*layers, nn.Linear(WIDTHS[-1], 1))


METHODS: dict[str, Callable[[], nn.Module]] = {
    "nothing": lambda: _network(None),
    "dropout": lambda: _network(lambda: nn.Dropout(P)),
    "output noise": lambda: _network(lambda: GaussianNoise(NOISE_SCALE)),
    "Bayesian": lambda: bayesian(_network(None)),
}


@dataclass(frozen=True)
class LayerFit:
    """One method's fit on the grid: the predictive ``mean`` and 94% band (``lower``,
    ``upper``); ``rmse`` of the mean against the true function over the data's range;
    ``gap_widening``: the band's mean width where there is no data (``|x| < GAP``) over
    its mean width where there is; ``coverage``: the share of fresh draws of ``y`` on the
    data's range inside the band; ``seconds`` of training and prediction."""

    method: str
    mean: list[float]
    lower: list[float]
    upper: list[float]
    rmse: float
    gap_widening: float
    coverage: float
    seconds: float


@dataclass(frozen=True)
class LayersDemoResult:
    """The data, the grid with the true function, each method's fit and the sentences."""

    x: list[float]
    y: list[float]
    grid: list[float]
    truth: list[float]
    fits: list[LayerFit]
    sentences: list[str]
    n_epochs: int


def _fit(method: str, x: torch.Tensor, y: torch.Tensor, grid: torch.Tensor, n_epochs: int,
         generator: torch.Generator) -> LayerFit:
    start = time.perf_counter()
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    net, lik = METHODS[method](), Gaussian(0.5)
    train(net, x, y, likelihood=lik, n_epochs=n_epochs, batch_size=len(x), learning_rate=LEARNING_RATE,
          temperature=1.0 if method == "Bayesian" else 0.0, generator=generator)
    pred = predict(net, grid, likelihood=lik, n_samples=200, level=0.94)
    mean, lower, upper = (t.reshape(-1) for t in (pred.mean, pred.lower, pred.upper))
    on_data = (grid[:, 0].abs() >= GAP) & (grid[:, 0].abs() <= 3)
    in_gap = grid[:, 0].abs() < GAP
    rmse = float((mean - truth(grid[:, 0]))[on_data].square().mean().sqrt())
    width = upper - lower
    fresh = truth(grid[:, 0]) + NOISE_SD * torch.randn(grid.shape[0], generator=generator)
    inside = ((fresh >= lower) & (fresh <= upper))[on_data]
    return LayerFit(method, mean.tolist(), lower.tolist(), upper.tolist(), rmse,
                    float(width[in_gap].mean() / width[on_data].mean()),
                    float(inside.double().mean()), time.perf_counter() - start)


def _sentences(fits: list[LayerFit]) -> list[str]:
    """What the numbers say: who fits the curve best, and whose band knows about the gap."""
    best = min(fits, key=lambda f: f.rmse)
    widest = max(fits, key=lambda f: f.gap_widening)
    others = [f for f in fits if f is not widest]
    spread = ", ".join(f"{f.method} {f.rmse:.3f}" for f in fits)
    return [
        f"Closest to the true curve where there is data: {best.method} (RMSE {spread}).",
        f"Where there is no data the {widest.method} band is {widest.gap_widening:.1f} times "
        f"as wide as over the data; the others' {min(f.gap_widening for f in others):.1f} to "
        f"{max(f.gap_widening for f in others):.1f} times: a fixed-size noise regularises the "
        "fit but its band is the learned noise scale alone.",
        "Share of fresh observations inside the 94% band over the data: "
        + ", ".join(f"{f.method} {f.coverage:.0%}" for f in fits) + ".",
    ]


def run_layers_demo(*, quick: bool = False, seed: int = 0,
                    n_epochs: int | None = None) -> LayersDemoResult:
    """Fit the four networks (``n_epochs`` full-batch steps each; default
    ``QUICK_EPOCHS`` with ``quick``, else ``FULL_EPOCHS``)."""
    if n_epochs is None:
        n_epochs = QUICK_EPOCHS if quick else FULL_EPOCHS
    generator = torch.Generator().manual_seed(seed)
    x, y = make_data(generator)
    grid = torch.linspace(-3.5, 3.5, 141)[:, None]
    with torch.random.fork_rng():  # the layers' initial weights, from ``generator``
        fits = [_fit(method, x, y, grid, n_epochs, generator) for method in METHODS]
    return LayersDemoResult(x[:, 0].tolist(), y[:, 0].tolist(), grid[:, 0].tolist(),
                            truth(grid[:, 0]).tolist(), fits, _sentences(fits), n_epochs)
