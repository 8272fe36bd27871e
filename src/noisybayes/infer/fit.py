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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from noisybayes._checks import check_choice, check_positive_int
from noisybayes._rng import make_generator
from noisybayes.errors import DivergenceError
from noisybayes.infer.data import as_data, batches
from noisybayes.infer.diagnostics import USABLE, pareto_khat, ratios_at_fit_data
from noisybayes.infer.laplace import laplace, whitening
from noisybayes.infer.objective import Data, LogJoint, elbo_estimate
from noisybayes.infer.posterior import FitInfo, Posterior
from noisybayes.math.families import FAMILIES, FullRank, GaussianFamily, LowRank, MeanField
from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model

__all__ = ["FitState", "fit"]

FamilyName = Literal["auto", "meanfield", "lowrank", "fullrank"]

# family="auto": full-rank up to this many parameters (a P x P Cholesky factor is cheap
# there), low-rank up to _AUTO_LOWRANK_MAX, mean-field beyond; a cheaper family rejected
# by k-hat is refitted full-rank up to _AUTO_REFIT_MAX parameters.
_AUTO_FULLRANK_MAX = 200
_AUTO_LOWRANK_MAX = 5000
_AUTO_REFIT_MAX = 1000
_AUTO_RANK = 10


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
    if name == "meanfield":  # the mean-field optimum for a Gaussian: sd_j = 1/sqrt(H_jj)
        return MeanField(laplace_loc, whitening(precision, diagonal=True)[0])
    full, _ = whitening(precision, diagonal=False)
    covariance = full @ full.T
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


def _choose_family(size: int) -> tuple[str, int, str]:
    """``family="auto"``: the richest Gaussian family whose cost suits ``size`` parameters."""
    if size <= _AUTO_FULLRANK_MAX:
        return "fullrank", 0, f"auto: {size} parameters <= {_AUTO_FULLRANK_MAX}, full-rank"
    if size <= _AUTO_LOWRANK_MAX:
        rank = min(_AUTO_RANK, size)
        return (
            "lowrank",
            rank,
            f"auto: {size} parameters > {_AUTO_FULLRANK_MAX}, low-rank (rank {rank})",
        )
    return "meanfield", 0, f"auto: {size} parameters > {_AUTO_LOWRANK_MAX}, mean-field"


def fit(
    model: Model,
    x: Any,
    y: Any,
    *,
    family: FamilyName = "auto",
    rank: int = 2,
    batch_size: int | Literal["auto"] | None = "auto",
    n_samples: int = 16,
    max_steps: int = 10_000,
    learning_rate: float = 0.05,
    window: int = 100,
    average_windows: int = 4,
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
            ``"fullrank"`` (Cholesky) Gaussian over the unconstrained parameters, or
            ``"auto"``: full-rank up to 200 parameters, low-rank (rank 10) up to 5,000,
            mean-field beyond; then the Pareto k-hat of the fit (as ``post.check()``, with
            ``diagnostics.default_draws``: up to 100,000 draws, fewer on large data), and a
            full-rank refit when a cheaper family gets k-hat > 0.7 and there
            are at most 1,000 parameters. ``info.family_reason`` says what
            happened, ``info.khat`` holds k-hat; a final k-hat > 0.7 raises a ``UserWarning``.
        rank: the number of factors of a ``"lowrank"`` family.
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
    family = check_choice("family", family, ("auto", *FAMILIES))  # type: ignore[assignment]
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
    anchor = None
    if batch_size < n_data:
        anchor = (mode.loc, log_joint.log_lik_grad(mode.loc, *data))
    settings = _Settings(
        n_data, batch_size, n_samples, max_steps, learning_rate, window, average_windows
    )

    def run(name: str, family_rank: int, why: str) -> Posterior:
        q = _build_family(name, mode.loc, mode.precision, family_rank)
        result = _optimise(
            log_joint, q, data, anchor, mode.precision, settings, gen, progress, callback
        )
        info = FitInfo(
            family=q.name,
            n_steps=result.n_steps,
            converged=result.converged,
            reason=result.reason,
            elbo_trace=torch.tensor(result.trace),
            n_data=n_data,
            batch_size=batch_size,
            n_samples=n_samples,
            seconds=time.perf_counter() - started,
            laplace_converged=mode.converged,
            laplace_positive_definite=mode.positive_definite,
            recoveries=result.recoveries,
            family_reason=why,
            laplace_precision=mode.precision,
        )
        return Posterior(model, layout, q, info, data)

    if family != "auto":
        return run(family, rank, f"requested family={family!r}")
    name, auto_rank, why = _choose_family(layout.size)
    post = run(name, auto_rank, why)
    khat = _auto_khat(post, gen)
    if khat > USABLE and name != "fullrank" and layout.size <= _AUTO_REFIT_MAX:
        why += (
            f"; its Pareto k-hat {khat:.2f} > {USABLE}, so refitted full-rank "
            f"({layout.size} parameters <= {_AUTO_REFIT_MAX})"
        )
        post = run("fullrank", 0, why)
        khat = _auto_khat(post, gen)
    post.info = replace(
        post.info, khat=khat, family_reason=why, seconds=time.perf_counter() - started
    )
    if khat > USABLE:
        warnings.warn(
            f"nb.fit(family='auto'): the {post.info.family} approximation has Pareto k-hat "
            f"{khat:.2f} > {USABLE}, so its means and sds cannot be trusted ({why}). Check "
            "the model's parameterisation and priors, or use MCMC; post.check() gives details.",
            UserWarning,
            stacklevel=2,
        )
    return post


def _auto_khat(post: Posterior, generator: torch.Generator) -> float:
    """The Pareto k-hat of a fit at a bounded cost (full data, in row chunks)."""
    _, log_ratios = ratios_at_fit_data(post, generator=generator, caller="family='auto'")
    return pareto_khat(log_ratios)[1]


@dataclass(frozen=True)
class _Settings:
    n_data: int
    batch_size: int
    n_samples: int
    max_steps: int
    learning_rate: float
    window: int
    average_windows: int


@dataclass(frozen=True)
class _Result:
    n_steps: int
    converged: bool
    reason: str
    trace: list[float]
    recoveries: int


def _optimise(
    log_joint: LogJoint,
    q: GaussianFamily,
    data: Data,
    anchor: tuple[torch.Tensor, torch.Tensor] | None,
    precision: torch.Tensor,
    settings: _Settings,
    gen: torch.Generator,
    progress: bool,
    callback: Callable[[FitState], None] | None,
) -> _Result:
    """Adam on the ELBO in windows; leaves ``q`` at the averaged iterate, frozen."""
    n_data, batch_size, n_samples = settings.n_data, settings.batch_size, settings.n_samples
    max_steps, learning_rate = settings.max_steps, settings.learning_rate
    window, average_windows = settings.window, settings.average_windows
    curvature = _whitened_curvature(q, precision)
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
            average_sum = [torch.zeros_like(s) for s in snapshot]
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
    return _Result(step, converged, reason, trace, recoveries)


def _assign(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)


def _with_params(family: GaussianFamily, values: list[torch.Tensor]) -> GaussianFamily:
    """A frozen copy of ``family`` holding ``values`` as its parameters."""
    clone = copy.deepcopy(family)
    _assign(list(clone.parameters()), values)
    return clone.requires_grad_(False)
