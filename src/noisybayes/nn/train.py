"""A plain training loop for in-memory data: Adam on :func:`elbo_loss` over shuffled minibatches.

Data stay tensors sliced by index (no per-row collation). The step size decays linearly to
a tenth of ``learning_rate`` over the run, which settles the noisy scale gradients.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from noisybayes._rng import make_generator, seeded_from
from noisybayes.errors import DivergenceError
from noisybayes.nn.likelihoods import Likelihood
from noisybayes.nn.objective import elbo_loss

__all__ = ["TrainInfo", "train"]


@dataclass(frozen=True)
class TrainInfo:
    """How training went: ``loss_trace`` is the mean per-datum ``-ELBO`` of each epoch."""

    n_epochs: int
    n_steps: int
    batch_size: int
    n_samples: int
    temperature: float
    loss_trace: torch.Tensor
    seconds: float


def _check_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    likelihood: Likelihood,
    n_epochs: int,
    batch_size: int = 32,
    learning_rate: float = 1e-2,
    n_samples: int = 1,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> TrainInfo:
    """Minimise the per-datum ``-ELBO`` of ``model`` (and ``likelihood``'s noise scale).

    Args:
        model, likelihood: a Bayesian network and its likelihood (both are trained).
        x, y: all training rows, ``(N, ...)`` each.
        n_epochs: passes over the data; ``batch_size`` rows per step.
        learning_rate: Adam's initial step, decayed linearly to a tenth.
        n_samples, temperature: as in :func:`elbo_loss`.
        generator: the randomness of the batches and of the weight noise.
        progress: show a progress bar over epochs.

    Raises:
        DivergenceError: the loss became NaN or infinite (names the epoch and step).
    """
    n_epochs = _check_int("n_epochs", n_epochs)
    batch_size = _check_int("batch_size", batch_size)
    if not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    n = x.shape[0]
    batch_size = min(batch_size, n)
    per_epoch = math.ceil(n / batch_size)
    total = n_epochs * per_epoch
    params = [*model.parameters(), *likelihood.parameters()]
    opt = torch.optim.Adam(params, lr=learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - 0.9 * step / total)
    gen = make_generator(None, generator)
    trace = torch.empty(n_epochs)
    epochs = range(n_epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="training", unit="epoch")
    start = time.perf_counter()
    model.train()
    with seeded_from(gen):
        for epoch in epochs:
            order = torch.randperm(n, generator=gen)
            running = 0.0
            for step, rows in enumerate(order.split(batch_size)):
                loss = elbo_loss(model, x[rows], y[rows], likelihood=likelihood, n_data=n,
                                 n_samples=n_samples, temperature=temperature)
                if not torch.isfinite(loss):
                    last = trace[epoch - 1].item() if epoch else float("nan")
                    raise DivergenceError(
                        f"loss diverged to {loss.item()} at epoch {epoch}, step {step} "
                        f"(previous epoch's mean loss {last:.4g}); lower learning_rate "
                        f"(got {learning_rate}) or check the data's scale"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.item() * rows.numel()
            trace[epoch] = running / n
    return TrainInfo(
        n_epochs=n_epochs, n_steps=total, batch_size=batch_size, n_samples=n_samples,
        temperature=float(temperature), loss_trace=trace, seconds=time.perf_counter() - start,
    )
