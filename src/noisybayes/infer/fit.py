"""``nb.fit``: variational inference for an ``nb.Model``, with no tuning.

1. Laplace start: the mode by L-BFGS and the curvature there (``laplace.py``).
2. Whitening: the family lives in ``z`` with ``theta = mode + T z``, ``T T^T ≈ H^{-1}``
   (diagonal ``T`` for mean-field and low-rank), so the ELBO is well conditioned and
   one learning rate fits every problem.
3. Stochastic optimisation of the ELBO with Adam, antithetic draws in one batched pass,
   minibatches scaled by ``N/B`` with an SVRG control variate anchored at the mode.
   The run is cut into windows; when a window's mean ELBO is no longer significantly
   above the previous one the learning rate is cut, and the fit stops once it is small.
   The answer is the average of the iterates over the last window (Polyak averaging).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from noisybayes._checks import check_choice, check_positive_int
from noisybayes._rng import make_generator
from noisybayes.errors import DivergenceError
from noisybayes.infer.data import as_data, batches
from noisybayes.infer.laplace import laplace, whitening
from noisybayes.infer.objective import Data, LogJoint, elbo_estimate
from noisybayes.infer.posterior import FitInfo, Posterior
from noisybayes.math.families import FAMILIES, FullRank, GaussianFamily, LowRank, MeanField
from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model

__all__ = ["FitState", "fit"]

FamilyName = Literal["meanfield", "lowrank", "fullrank"]

# An ELBO gain (nats, whole data set) per window below which progress counts as stalled
# even when the Monte Carlo noise is too small to hide it.
_NEGLIGIBLE_GAIN = 0.01


@dataclass(frozen=True)
class FitState:
    """What a ``callback`` sees at the end of each window: the averaged family so far."""

    step: int
    elbo: float
    learning_rate: float
    family: GaussianFamily


def _check_model_output(log_joint: LogJoint, u: torch.Tensor, data: Data) -> None:
    """Run ``forward`` once, with argument validation on, and check it fits ``y``."""
    xs, y = data
    head = (tuple(x[:8] for x in xs), y[:8])
    values, _ = log_joint.layout.constrain(u)
    dist = log_joint.likelihood(values, head[0])
    if not isinstance(dist, torch.distributions.Distribution):
        raise TypeError(
            f"model.forward must return a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    shape = tuple(dist.batch_shape + dist.event_shape)
    if shape != tuple(head[1].shape):
        raise ValueError(
            f"y must have the shape of the model's distribution: forward returned shape {shape} "
            f"for the first {head[1].shape[0]} rows, y has {tuple(head[1].shape)}"
        )
    full = log_joint.likelihood(values, xs)
    inside = full.support.check(y)
    if not bool(inside.all()):
        first = tuple((~inside).nonzero()[0].tolist())
        raise ValueError(
            f"y must lie in the support of the likelihood ({full.support}), got "
            f"{int((~inside).sum())} value(s) outside, e.g. {y[first].tolist()!r} at row {first[0]}"
        )


def _build_family(
    name: str, laplace_loc: torch.Tensor, precision: torch.Tensor, rank: int
) -> GaussianFamily:
    """The family in coordinates whitened by the Laplace curvature, started at Laplace."""
    if name == "fullrank":
        return FullRank(laplace_loc, whitening(precision, diagonal=False)[0])
    full, _ = whitening(precision, diagonal=False)
    covariance = full @ full.T
    if name == "meanfield":  # the mean-field optimum for a Gaussian: sd_j = 1/sqrt(H_jj)
        return MeanField(laplace_loc, whitening(precision, diagonal=True)[0])
    precond = covariance.diagonal().sqrt()  # Laplace marginal sds: unit-diagonal z-covariance
    family = LowRank(laplace_loc, precond, rank=min(rank, laplace_loc.shape[0]))
    family.set_z_covariance(covariance / precond[:, None] / precond[None, :])
    return family


def _whitened_curvature(family: GaussianFamily, precision: torch.Tensor) -> torch.Tensor:
    """The Laplace precision seen from the family's coordinates: ``T^T H T``."""
    t = family.precond.double()
    h = precision.double()
    whitened = t[:, None] * h * t[None, :] if t.ndim == 1 else t.T @ h @ t
    return whitened.to(precision.dtype)


def fit(
    model: Model,
    x: Any,
    y: Any,
    *,
    family: FamilyName = "fullrank",
    rank: int = 2,
    batch_size: int | Literal["auto"] | None = "auto",
    n_samples: int = 16,
    max_steps: int = 10_000,
    learning_rate: float = 0.05,
    window: int = 100,
    average_windows: int = 8,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    max_curvature_rows: int = 50_000,
    callback: Callable[[FitState], None] | None = None,
) -> Posterior:
    """Fit ``q(theta)`` to ``p(theta | x, y)`` by maximising the ELBO.

    Args:
        model: an ``nb.Model``; ``model(*x)`` returns the distribution of ``y``.
        x: a tensor or a tuple of tensors (``forward``'s positional arguments), rows first.
        y: the targets, ``(N, ...)``. The fit computes in the widest float dtype of x and y.
        family: ``"meanfield"`` (diagonal), ``"lowrank"`` (``rank`` factors + diagonal) or
            ``"fullrank"`` (Cholesky) Gaussian over the unconstrained parameters.
        batch_size: rows per step; ``None`` uses all rows, ``"auto"`` all rows up to
            10,000 and 4,096 beyond. The batch log-likelihood is scaled by
            ``N / batch_size`` so each step is unbiased for the full-data ELBO.
        n_samples: Monte Carlo draws per step (antithetic pairs), evaluated in one pass.
        max_steps: a hard cap on optimisation steps (``info.converged`` says if it bit).
        learning_rate, window, average_windows: the initial Adam step in whitened units, the
            steps between convergence checks, and how many stationary windows the final
            iterate average spans. The defaults need no tuning.
        seed, generator: the randomness of the fit (one of them); a fixed seed reproduces it.
        progress: show a progress bar when the fit takes more than a second.
        max_curvature_rows: rows used for the Laplace curvature on large data.
        callback: called with a :class:`FitState` after every window.
    """
    family = check_choice("family", family, tuple(FAMILIES))  # type: ignore[assignment]
    rank = check_positive_int("rank", rank)
    n_samples = check_positive_int("n_samples", n_samples)
    window = check_positive_int("window", window)
    average_windows = check_positive_int("average_windows", average_windows)
    max_steps = check_positive_int("max_steps", max_steps)
    if not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    gen = make_generator(seed, generator)
    data = as_data(x, y)
    n_data = data[1].shape[0]
    if batch_size == "auto":
        batch_size = n_data if n_data <= 10_000 else 4096
    elif batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
        if batch_size > n_data:
            raise ValueError(
                f"batch_size must be <= the number of rows ({n_data}), got {batch_size}"
            )
    batch_size = batch_size or n_data
    started = time.perf_counter()

    layout = ParamLayout(model)
    log_joint = LogJoint(model, layout)
    start = torch.zeros(layout.size, dtype=data[1].dtype)
    _check_model_output(log_joint, start, data)

    mode = laplace(log_joint, data, start, gen, max_curvature_rows)
    if not bool(torch.isfinite(mode.loc).all() and torch.isfinite(mode.precision).all()):
        raise DivergenceError(
            "the search for the posterior mode diverged (non-finite parameters or curvature); "
            "the posterior may be improper: give proper priors or check the data's scale"
        )
    q = _build_family(family, mode.loc, mode.precision, rank)
    curvature = _whitened_curvature(q, mode.precision)
    anchor = None
    if batch_size < n_data:
        anchor = (mode.loc, log_joint.log_lik_grad(mode.loc, *data))

    params = list(q.parameters())
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    stream = batches(data, batch_size, gen)
    trace: list[float] = []
    window_sum = [torch.zeros_like(p) for p in params]
    average_sum = [torch.zeros_like(p) for p in params]
    averaged_windows = 0
    previous: tuple[float, float] | None = None
    lr, final_lr = learning_rate, learning_rate * 0.1
    converged, reason, recoveries = False, f"max_steps={max_steps} reached", 0
    snapshot = [p.detach().clone() for p in params]
    bar = tqdm(total=max_steps, disable=not progress, delay=1.0, leave=False, desc="fit")
    step = 0
    while step < max_steps:
        optimizer.zero_grad(set_to_none=True)
        elbo = elbo_estimate(log_joint, q, next(stream), n_data, n_samples, gen, anchor, curvature)
        if not torch.isfinite(elbo):
            recoveries += 1
            if recoveries > 3:
                bar.close()
                raise DivergenceError(
                    f"the ELBO became non-finite at step {step} and did not recover after 3 "
                    "restarts with smaller steps; check the data's scale and the priors, or "
                    "fit in float64"
                )
            _assign(params, snapshot)
            lr *= 0.1
            optimizer = torch.optim.Adam(params, lr=lr)
            continue
        (-elbo / n_data).backward()
        optimizer.step()
        step += 1
        trace.append(float(elbo.detach()) / n_data)
        with torch.no_grad():
            for total, p in zip(window_sum, params, strict=True):
                total += p
        bar.update(1)
        if step % window:
            continue
        recent = torch.tensor(trace[-window:], dtype=torch.float64) * n_data
        summary = (float(recent.mean()), float(recent.std()) / math.sqrt(window))
        stationary = previous is not None and (
            summary[0] - previous[0] < 2 * math.hypot(summary[1], previous[1]) + _NEGLIGIBLE_GAIN
        )
        previous = summary
        with torch.no_grad():
            snapshot = [total / window for total in window_sum]
            for total in window_sum:
                total.zero_()
        if lr > final_lr:  # search phase: cut the step size whenever progress stalls
            if stationary:
                lr = max(lr * 0.3, final_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
        elif not stationary:  # averaging phase, but still improving: start averaging again
            averaged_windows = 0
            average_sum = [s.clone() for s in snapshot]
        else:
            averaged_windows += 1
            with torch.no_grad():
                for total, s in zip(average_sum, snapshot, strict=True):
                    total += s
            snapshot = [total / averaged_windows for total in average_sum]
        if callback is not None:
            callback(FitState(step, summary[0], lr, _with_params(q, snapshot)))
        if averaged_windows >= average_windows:
            converged = True
            reason = (
                f"ELBO stationary; iterates averaged over the last {averaged_windows * window} "
                f"steps at step size {lr:.1e}"
            )
            break
    bar.close()
    if not converged and step % window:  # stopped mid-window: include what it saw
        with torch.no_grad():
            snapshot = [total / (step % window) for total in window_sum]
    _assign(params, snapshot)
    q.requires_grad_(False)
    info = FitInfo(
        family=q.name,
        n_steps=step,
        converged=converged,
        reason=reason,
        elbo_trace=torch.tensor(trace),
        n_data=n_data,
        batch_size=batch_size,
        n_samples=n_samples,
        seconds=time.perf_counter() - started,
        laplace_converged=mode.converged,
        laplace_positive_definite=mode.positive_definite,
        recoveries=recoveries,
    )
    return Posterior(model, layout, q, info)


def _assign(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)


def _with_params(family: GaussianFamily, values: list[torch.Tensor]) -> GaussianFamily:
    """A frozen copy of ``family`` holding ``values`` as its parameters."""
    clone = copy.deepcopy(family)
    _assign(list(clone.parameters()), values)
    return clone.requires_grad_(False)
