"""The ELBO on fixed draws, maximised by L-BFGS (deterministic ADVI).

With the base noise ``eps_1..M`` drawn once, ``ELBO_M(q) = mean_m log p(theta(eps_m))
+ H[q]`` (with the Taylor control variate of :func:`~noisybayes.infer.objective.elbo_estimate`)
is a smooth deterministic function of ``q``'s parameters, so from the Laplace start in
whitened coordinates a quasi-Newton method converges in a handful of evaluations (Giordano,
Ingram & Broderick 2023). Its optimum differs from the ELBO's by Monte Carlo error of order
``1/sqrt(M)``. That error is estimated at the optimum from the spread of the per-draw
gradients less the Laplace quadratic's (a sandwich: ``A^{-1} Cov(g) A^{-1} / M`` for the
mean, ``A`` the curvature in whitened coordinates; half the spread of ``g (z - m)`` for the
log-sds). The estimate is an upper bound: the moment-matched draws also integrate the rest
of every quadratic exactly, which it does not credit (on a 60-row regression it overstates
the error about 40-fold; far more where the Laplace curvature is a poor guide, as in
hierarchical models). Where it exceeds ``tolerance`` the error is measured instead, from a
second solve on fresh draws (``_replicate``), and ``M`` is raised until the error is below
``tolerance`` posterior sds, or the evaluation budget says stop. A solve that spends its
``max_iter`` evaluations (the Laplace curvature a poor guide to ``q``'s scales, as for
group-level sds, whose ``q`` is several times wider) is continued from its last point in
coordinates re-whitened to that ``q`` (``GaussianFamily.recentre``), where the gradient
tolerance again means about 0.01 sd, and the replicate starts there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from noisybayes.engine.distributed import World
from noisybayes.infer.minimize import NonFinite, minimize
from noisybayes.infer.objective import Data, LogJoint, batched_evaluation, elbo_estimate
from noisybayes.math.families import GaussianFamily

__all__ = ["FixedDrawResult", "fit_fixed_draws"]

# The ELBO's curvature in the whitened means is about 1, so a gradient entry below 0.01
# leaves the mean within about 0.01 sd of the fixed-draw optimum (half the Monte Carlo
# tolerance); a tighter bound is below what float32 gradients on 10^5 rows resolve.
_GRADIENT_TOLERANCE = 1e-2
# Where a solve from the Laplace start spends its whole budget (the Laplace curvature a poor
# guide to q's scales, as for group-level sds), it is continued this many times from its
# last point in coordinates re-whitened to that q.
_RECENTRES = 4


@dataclass(frozen=True)
class FixedDrawResult:
    """How the fixed-draw solve ended.

    ``converged`` is False when the optimum's Monte Carlo error could not be brought under
    the tolerance within the budget (or the objective went non-finite); the family then
    holds the last finite iterate and the caller falls back to stochastic optimisation.
    """

    converged: bool
    reason: str
    n_draws: int
    n_evaluations: int
    mean_error: float
    sd_error: float
    loss_trace: list[float]


def fit_fixed_draws(
    log_joint: LogJoint,
    family: GaussianFamily,
    data: Data,
    curvature: torch.Tensor,
    generator: torch.Generator,
    *,
    tolerance: float = 0.02,
    start_draws: int = 32,
    max_row_draws: float = 5e7,
    max_iter: int = 100,
    world: World | None = None,
) -> FixedDrawResult:
    """Fit ``family`` in place on ``M >= 2 noise_dim`` fixed draws, raising ``M`` until the
    optimum is within ``tolerance`` posterior sds of the ELBO's (estimated), while
    ``M x rows <= max_row_draws``. ``curvature`` (the Laplace precision in whitened
    coordinates) serves the error estimate. Over a ``world`` of several processes ``data``
    is this process's rows, ``generator`` is in the same state on each, and every sum over
    rows is summed over the processes (``rows`` counts all of them)."""
    world = world or World()
    n_data = world.total(data[1].shape[0])
    n_draws = _even(max(start_draws, 2 * family.noise_dim))
    evaluations, trace = 0, list[float]()
    mean_error = sd_error = math.inf
    why = "over"
    while n_draws * n_data <= max_row_draws:
        noise = _moment_matched(n_draws, family, generator)
        round_start = parameters_to_vector(family.parameters()).detach().clone()
        used, finite, per_draw = _lbfgs(log_joint, family, data, noise, max_iter, trace,
                                        world)
        evaluations += used
        if finite and used >= max_iter:  # stopped by the budget: poorly scaled coordinates
            for _ in range(_RECENTRES):
                curvature = _recentred(family, curvature)
                used, finite, per_draw = _lbfgs(log_joint, family, data, noise, max_iter,
                                                trace, world)
                evaluations += used
                if not finite or used < max_iter:
                    break
            curvature = _recentred(family, curvature)  # the replicate starts at the optimum
            per_draw = None  # its z are the old coordinates'
            round_start = parameters_to_vector(family.parameters()).detach().clone()
        if finite:
            mean_error, sd_error = _monte_carlo_error(log_joint, family, data, curvature, noise,
                                                      world, per_draw)
            how = "estimated"
            if max(mean_error, sd_error) > tolerance:  # the bound says no: measure it instead
                used, finite, mean_error, sd_error = _replicate(
                    log_joint, family, data, round_start, n_draws, generator, max_iter, trace,
                    world)
                evaluations, how = evaluations + used, "measured"
        if not finite:
            return FixedDrawResult(False, "the fixed-draw ELBO became non-finite", n_draws,
                                   evaluations, mean_error, sd_error, trace)
        worst = max(mean_error, sd_error)
        if worst <= tolerance:
            reason = (f"fixed-draw ELBO optimum on {n_draws} draws; {how} Monte Carlo error "
                      f"{mean_error:.3f} sd (means), {sd_error:.3f} (relative sds)")
            return FixedDrawResult(True, reason, n_draws, evaluations, mean_error, sd_error,
                                   trace)
        if not math.isfinite(worst):
            return FixedDrawResult(False, "the Monte Carlo error estimate is not finite",
                                   n_draws, evaluations, mean_error, sd_error, trace)
        why = f"(Monte Carlo error {worst:.3f} sd on {n_draws}) over"
        # the bound falls as 1 / sqrt(M); a measured error on few draws often falls faster
        # (the optimum is not yet in its asymptotic regime), so it is trusted less far
        growth = 64.0 if how == "estimated" else 8.0
        n_draws = _even(math.ceil(n_draws * min(growth, (worst / tolerance) ** 2 * 1.2)))
    return FixedDrawResult(
        False, f"{n_draws} fixed draws x {n_data} rows {why} the budget of "
        f"{max_row_draws:.0e}", n_draws, evaluations, mean_error, sd_error, trace)


def _recentred(family: GaussianFamily, curvature: torch.Tensor) -> torch.Tensor:
    """Re-whiten ``family`` at its current ``q`` (``GaussianFamily.recentre``) and return the
    curvature in the new coordinates, ``D A D``."""
    sd = family.recentre().to(curvature.dtype)
    return sd[:, None] * curvature * sd[None, :]


def _even(n: int) -> int:
    return n + n % 2


def _moment_matched(n_draws: int, family: GaussianFamily, generator: torch.Generator) -> torch.Tensor:
    """``n_draws`` antithetic standard-normal draws whose sample mean is exactly 0 and whose
    sample second moment is exactly ``I`` (``n_draws >= 2 noise_dim``): they integrate every
    quadratic exactly, as the Taylor control variate does for fresh draws."""
    half = torch.randn(n_draws // 2, family.noise_dim, generator=generator, dtype=torch.float64)
    moment = half.T @ half / half.shape[0]
    eigvals, eigvecs = torch.linalg.eigh(moment)
    half = half @ (eigvecs * eigvals.rsqrt()) @ eigvecs.T
    return torch.cat([half, -half]).to(family.shift)


def _lbfgs(
    log_joint: LogJoint,
    family: GaussianFamily,
    data: Data,
    noise: torch.Tensor,
    max_iter: int,
    trace: list[float],
    world: World,
) -> tuple[int, bool, torch.Tensor | None]:
    """Minimise ``-ELBO_M`` (in nats: gradients in whitened units) over ``family``'s
    parameters, in place; returns the evaluations used, False (parameters unchanged) when
    the value is NaN somewhere or non-finite at the start, and, where the last evaluation
    was at the point returned, this process's share of the per-draw gradients ``d log
    p(theta(z_m)) / d z_m`` there without the closed-form priors (``(M, noise_dim)``, for
    :func:`_monte_carlo_error`). Over several processes each evaluates ``-ELBO_M / W``
    with its rows' log-likelihood scaled by ``W``, and the values and gradients are summed
    (``World``)."""
    params = list(family.parameters())
    start = parameters_to_vector(params).detach()
    n_rows = data[1].shape[0]
    n_data = world.total(n_rows)
    last: dict[str, torch.Tensor] = {}

    def loss_and_grad(vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            vector_to_parameters(vector, params)
        draws = family.from_noise(noise)
        loss = -world.share * elbo_estimate(log_joint, family, data, world.size * n_rows,
                                            noise.shape[0], None, draws=draws)
        *grads, per_draw = torch.autograd.grad(loss, [*params, draws.z])
        last.update(point=vector, per_draw=-noise.shape[0] * per_draw)
        grad = parameters_to_vector(grads)
        loss, grad = world.sum(loss.detach(), grad)
        value = float(loss) / n_data
        if math.isfinite(value) and (not trace or value < trace[-1]):
            trace.append(value)
        return loss.detach(), grad

    try:  # the point found has a finite value: the start's, or a lower one
        found = minimize(loss_and_grad, start, max_evaluations=max_iter,
                         gradient_tolerance=_GRADIENT_TOLERANCE, unit_curvature=True)
    except NonFinite:
        with torch.no_grad():
            vector_to_parameters(start, params)
        return 0, False, None
    with torch.no_grad():
        vector_to_parameters(found.point, params)
    there = bool(last) and torch.equal(last["point"], found.point)
    return found.n_evaluations, True, last["per_draw"] if there else None


def _replicate(
    log_joint: LogJoint,
    family: GaussianFamily,
    data: Data,
    start: torch.Tensor,
    n_draws: int,
    generator: torch.Generator,
    max_iter: int,
    trace: list[float],
    world: World,
) -> tuple[int, bool, float, float]:
    """Solve again from ``start`` (where the solve that left ``family`` at its optimum
    began) on ``n_draws`` fresh draws, and measure the error of one solve from the two
    optima as ``|a - b| / sqrt 2`` (two independent solves differ by ``sqrt 2`` times the
    error of one, Monte Carlo and stopping error alike), the largest over coordinates, in
    posterior sds for the means and relative for the sds. One pair gives a noisy estimate
    (with a single coordinate, an error twice the tolerance passes about a third of the
    time); the tolerance sits well below the accuracy asked of a fit (0.02 against 0.1 sd)
    to leave room for it. Returns the evaluations, whether the value stayed finite, and the
    two errors; ``family`` ends at the second optimum."""
    loc, sd = family.mean().detach().clone(), family.variance().detach().sqrt()
    with torch.no_grad():
        vector_to_parameters(start, list(family.parameters()))
    noise = _moment_matched(n_draws, family, generator)
    used, finite, _ = _lbfgs(log_joint, family, data, noise, max_iter, trace, world)
    if not finite:
        return used, False, math.inf, math.inf
    with torch.no_grad():
        loc_b, sd_b = family.mean(), family.variance().sqrt()
        mean_error = ((loc - loc_b).abs() / sd_b).max() / math.sqrt(2.0)
        sd_error = ((sd - sd_b).abs() / sd_b).max() / math.sqrt(2.0)
    return used, True, float(mean_error), float(sd_error)


def _monte_carlo_error(
    log_joint: LogJoint,
    family: GaussianFamily,
    data: Data,
    curvature: torch.Tensor,
    noise: torch.Tensor,
    world: World,
    likelihood_gradient: torch.Tensor | None = None,
) -> tuple[float, float]:
    """The estimated Monte Carlo sd of the fixed-draw optimum: the largest over coordinates,
    for the means in posterior sds and for the sds as a relative error (the per-draw
    gradients summed over ``world``'s processes, each adding its share). Given the per-draw
    gradients of the log density without the closed-form priors (``likelihood_gradient``,
    from the solve's last evaluation), the data are not read again."""
    xs, y = data
    with torch.no_grad():
        z = family.from_noise(noise).z
        loc = family.loc.detach().clone()
    z.requires_grad_(True)
    theta = family.to_theta(z)
    if likelihood_gradient is None:  # the log joint, read from the rows
        with batched_evaluation():
            log_p = log_joint.batched(theta, xs, y, float(world.size))
        likelihood_gradient = torch.zeros_like(z)
    else:  # the rest of it: the closed-form priors
        log_p = log_joint.closed_form_log_prior(theta)
    quadratic = 0.5 * ((z @ curvature) * z).sum(-1)
    share = world.share * (log_p + quadratic).sum()
    (per_draw,) = torch.autograd.grad(share, z)
    per_draw = per_draw + likelihood_gradient  # residual gradients
    (per_draw,) = world.sum(per_draw.double())
    half = noise.shape[0] // 2
    pair_mean = 0.5 * (per_draw[:half] + per_draw[half:])
    pair_scale = 0.5 * (per_draw[:half] - per_draw[half:]) * (z.detach()[:half] - loc).double()
    a_inv = torch.linalg.pinv(curvature.double())
    cov_z = a_inv @ _covariance(pair_mean) @ a_inv / half
    t = family.precond.double()
    cov_theta = t[:, None] * cov_z * t[None, :] if t.ndim == 1 else t @ cov_z @ t.T
    variance = family.variance().detach().double()
    mean_error = (cov_theta.diagonal().clamp_min(0) / variance).sqrt().max()
    sd_error = 0.5 * (pair_scale.var(0, correction=1) / half).sqrt().max()
    return float(mean_error), float(sd_error)


def _covariance(rows: torch.Tensor) -> torch.Tensor:
    centred = rows - rows.mean(0)
    return centred.T @ centred / max(1, rows.shape[0] - 1)
