"""``nb.calibration``: how well a posterior predictive matches held-out observations.

From ``S`` predictive draws per held-out row (``nb.predictive_draws`` or an estimator's
``predictive_draws``) it reports the coverage of central intervals at several levels, the
PIT values (uniform when calibrated), the CRPS and the log predictive density
``log p(y_i | data) ≈ log mean_s p(y_i | theta_s)`` (Gneiting & Raftery 2007).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call, vmap

from noisybayes._checks import as_float_tensor, check_positive_int, is_number
from noisybayes._rng import make_generator, seeded_from
from noisybayes.infer.data import as_inputs
from noisybayes.infer.objective import batched_evaluation
from noisybayes.infer.posterior import GaussianPosterior
from noisybayes.math.calibration import (
    central_coverage,
    crps_from_draws,
    ks_uniform,
    log_mean_exp,
    probability_integral_transform,
)

__all__ = ["CalibrationReport", "PredictiveDraws", "calibration", "predictive_draws"]


@dataclass(frozen=True)
class PredictiveDraws:
    """Draws from the posterior predictive at ``n`` rows: ``draws`` ``(S, n)``, one simulated
    observation per parameter draw ``theta_s``, and ``log_likelihood`` ``(S, n)``, the
    log-density ``log p(y_i | theta_s)`` of held-out ``y`` (``None`` when none was given)."""

    draws: torch.Tensor
    log_likelihood: torch.Tensor | None = None

    def rescaled(self, shift: float, scale: float) -> PredictiveDraws:
        """The draws of ``shift + scale * Y``; densities gain the Jacobian ``-log scale``."""
        if shift == 0.0 and scale == 1.0:
            return self
        log_lik = self.log_likelihood
        return PredictiveDraws(
            draws=self.draws * scale + shift,
            log_likelihood=None if log_lik is None else log_lik - math.log(scale),
        )


def predictive_draws(
    posterior: GaussianPosterior,
    x: Any,
    y: Any = None,
    *,
    n_samples: int = 1000,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> PredictiveDraws:
    """``n_samples`` draws of ``y`` at inputs ``x`` (the model's ``forward`` arguments) and,
    given held-out ``y``, its per-draw log-likelihood, in one batched (``vmap``) pass."""
    n_samples = check_positive_int("n_samples", n_samples)
    gen = make_generator(seed, generator)
    xs = as_inputs(x, dtype=posterior.dtype)
    theta = posterior.sample_unconstrained(n_samples, generator=gen)
    layout, model = posterior.layout, posterior.model
    target = None if y is None else as_float_tensor("y", y, dtype=posterior.dtype)
    if target is not None:
        first = functional_call(model, layout.values(theta[0]), xs)
        shape = tuple(first.batch_shape + first.event_shape)
        if tuple(target.shape) != shape:
            raise ValueError(f"y must have the shape of the predictions {shape}, got {tuple(target.shape)}")
        inside = first.support.check(target)
        if not bool(inside.all()):
            row = int((~inside).reshape(-1).nonzero()[0])
            raise ValueError(
                f"y must lie in the support of the likelihood ({first.support}), got "
                f"{int((~inside).sum())} value(s) outside, e.g. {float(target.reshape(-1)[row])!r} "
                f"at row {row}"
            )

    def one_draw(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = functional_call(model, layout.values(u), xs)
        draw = dist.sample()
        log_lik = dist.log_prob(target) if target is not None else torch.zeros_like(draw)
        return draw, log_lik

    with batched_evaluation(), seeded_from(gen):
        draws, log_lik = vmap(one_draw, randomness="different")(theta)
    return PredictiveDraws(draws=draws, log_likelihood=None if target is None else log_lik)


@dataclass(frozen=True)
class CalibrationReport:
    """How well predictive draws match ``n`` held-out observations.

    ``coverage[k]`` is the fraction of observations inside the central predictive interval
    of ``levels[k]`` (calibrated: ``coverage ≈ levels``; at least ``levels`` for counts).
    ``pit`` ``(n,)`` holds the (randomised) PIT values, uniform when calibrated, and
    ``pit_ks`` their Kolmogorov-Smirnov distance from Uniform(0, 1). ``crps`` ``(n,)`` is the
    continuous ranked probability score per observation (lower is better), ``mean_crps`` its
    mean. ``log_density`` ``(n,)`` is ``log p(y_i | data)`` and ``mean_log_density`` its mean
    (higher is better); both are ``None`` when the draws carry no log-likelihoods.
    """

    levels: tuple[float, ...]
    coverage: tuple[float, ...]
    pit: torch.Tensor
    pit_ks: float
    crps: torch.Tensor
    mean_crps: float
    log_density: torch.Tensor | None
    mean_log_density: float | None
    n_data: int
    n_draws: int


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    values = tuple(levels)
    bad = [v for v in values if not (is_number(v) and 0.0 < v < 1.0)]
    if not values or bad:
        raise ValueError(f"levels must be numbers in (0, 1), got {list(values)!r}")
    return tuple(float(v) for v in values)


def calibration(
    pred: PredictiveDraws | torch.Tensor,
    y: Any,
    levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    *,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> CalibrationReport:
    """Score predictive draws against held-out ``y`` ``(n,)``.

    Args:
        pred: ``nb.PredictiveDraws`` (with log-likelihoods for the log predictive density)
            or a tensor of draws ``(S, n)``.
        y: the held-out observations, one per column of the draws.
        levels: the central-interval levels whose coverage is reported.
        seed, generator: the uniforms of the randomised PIT (used only where draws tie
            with ``y``, as for counts).
    """
    if isinstance(pred, PredictiveDraws):
        draws, log_lik = pred.draws, pred.log_likelihood
    elif isinstance(pred, torch.Tensor):
        draws, log_lik = pred, None
    else:
        raise TypeError(
            "pred must be nb.PredictiveDraws or a tensor of draws (n_samples, n), got "
            f"{type(pred).__name__}; estimators give them with predictive_draws(X, y)"
        )
    levels = _check_levels(levels)
    if draws.ndim != 2 or draws.shape[0] < 2:
        raise ValueError(
            f"pred must hold draws of shape (n_samples >= 2, n), got {tuple(draws.shape)}"
        )
    target = as_float_tensor("y", y, ndim=(1,), dtype=draws.dtype).to(draws.device)
    if target.shape[0] != draws.shape[1]:
        raise ValueError(
            f"y must have one value per column of the draws ({draws.shape[1]}), "
            f"got {target.shape[0]}"
        )
    draws = draws.detach()
    gen = make_generator(seed, generator)
    pit = probability_integral_transform(draws, target, gen)
    crps = crps_from_draws(draws, target)
    log_density = None if log_lik is None else log_mean_exp(log_lik.detach())
    return CalibrationReport(
        levels=levels,
        coverage=tuple(float(central_coverage(draws, target, level).mean()) for level in levels),
        pit=pit,
        pit_ks=ks_uniform(pit),
        crps=crps,
        mean_crps=float(crps.mean()),
        log_density=log_density,
        mean_log_density=None if log_density is None else float(log_density.mean()),
        n_data=int(target.shape[0]),
        n_draws=int(draws.shape[0]),
    )
