"""Laplace start: the posterior mode and the curvature there, to whiten the VI problem.

``u* = argmax log p(u, y)`` by L-BFGS, then ``H = -grad^2 log p(u*, y)``; the Laplace
approximation is ``N(u*, H^{-1})``. For a linear-Gaussian model it is the exact posterior.
On large data the curvature is estimated on a random subset of rows, scaled by ``N/n``,
and the mode found there is polished by Newton steps on all rows, each step's gradient summed
over one pass of the rows (:class:`~noisybayes.infer.data.Rows`: in memory, or streamed from a
data source).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from noisybayes.engine.distributed import World
from noisybayes.errors import DivergenceError
from noisybayes.infer.data import Rows
from noisybayes.infer.minimize import NonFinite, minimize
from noisybayes.infer.objective import Data, LogJoint, batched_evaluation, gradient_of

__all__ = ["LaplaceResult", "laplace", "laplace_from_subset", "whitening"]

# Rows x parameters per chunk of the curvature's sum: a bound on the temporaries of the graph
# each Hessian row is differentiated through; fewer, larger chunks take fewer passes.
_CURVATURE_ELEMENTS = 2**21
# A Newton polish shorter than 0.1 posterior sd (squared: 0.01) keeps the curvature found
# before it; a longer one has it evaluated again at the polished mode unless the gradient
# of its rows changed over the polish as it says (``_secant_holds``).
_SAME_CURVATURE = 0.01
_SECANT_TOLERANCE = 0.02
# Passes of Newton steps with the first curvature before it is taken again where they
# reached: a converging polish needs two to four.
_CHORD_PASSES = 6
# A Newton decrement (squared posterior sds per parameter) under which a step that does not
# shrink it ends the polish: the rounding of the gradient, not the mode, is left.
_ROUNDING_FLOOR = 1e-4
# The mode search stops when an iteration gains less than this much log density (nats):
# within a fraction of a posterior sd of the mode, where the Newton polish converges fast.
_SEARCH_NATS = 1e-3


@dataclass(frozen=True)
class LaplaceResult:
    """Mode ``loc`` (``(P,)``), curvature ``precision`` (``(P, P)``), how the search went,
    and ``log_lik_gradient``, ``grad_u sum_i log p(y_i | x_i, u)`` over all rows at ``loc``
    (``(P,)``; the control variate's anchor), from ``n_passes`` passes over the rows."""

    loc: torch.Tensor
    precision: torch.Tensor
    converged: bool
    n_evaluations: int
    positive_definite: bool
    log_lik_gradient: torch.Tensor
    n_passes: int


def _lbfgs(
    objective: Callable[[torch.Tensor], torch.Tensor],
    shift: torch.Tensor,
    precond: torch.Tensor,
    max_iter: int,
    world: World,
    n_data: int,
) -> tuple[torch.Tensor, bool, int]:
    """Minimise ``objective(u)`` over ``u = shift + precond @ v`` from ``v = 0``
    (``objective`` is this process's share of ``-log p(u, y) / N``, ``N = n_data``: its value
    and gradient are summed over ``world``), until an iteration gains less than
    ``_SEARCH_NATS`` of ``log p``: the Newton polish takes it from there.

    Returns the minimising ``u``, whether L-BFGS converged, and the evaluations it used.
    Raises ``_NonFinite`` (holding the offending ``u``) if the objective is NaN, or it or its
    gradient is non-finite at the start.
    """

    def loss_and_grad(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v.requires_grad_(True)
        loss = objective(shift + precond @ v)
        (grad,) = torch.autograd.grad(loss, v)
        total, grad = world.sum(loss.detach(), grad)
        return total, grad

    try:
        found = minimize(loss_and_grad, torch.zeros_like(shift), max_evaluations=max_iter,
                         gradient_tolerance=1e-9, value_tolerance=_SEARCH_NATS / n_data)
    except NonFinite as error:
        raise _NonFinite((shift + precond @ error.point).detach()) from None
    return (shift + precond @ found.point).detach(), found.converged, found.n_evaluations


class _NonFinite(Exception):
    def __init__(self, point: torch.Tensor) -> None:
        super().__init__()
        self.point = point


def _curvature(
    log_joint: LogJoint, u: torch.Tensor, rows: Data, n_rows: int, world: World,
) -> torch.Tensor:
    """``-grad^2 [log p(u) + (N/n) log p(y_rows | u)]``, summed over chunks of rows so the
    Hessian's temporaries stay small (``N = n_rows`` rows that ``rows`` sample; over
    ``world``, each process's share summed)."""
    xs, y = rows
    scale = n_rows / y.shape[0]
    u = u.detach()
    chunks = math.ceil(y.shape[0] * u.shape[0] / _CURVATURE_ELEMENTS)
    chunk = max(1, math.ceil(y.shape[0] / max(1, chunks)))  # equal chunks: no short last one
    with batched_evaluation():
        h = -world.share * _hessian(log_joint.log_prior, u)
        for start in range(0, y.shape[0], chunk):
            part = (tuple(x[start : start + chunk] for x in xs), y[start : start + chunk])
            h = h - scale * _hessian(log_joint.log_lik, u, *part)
    (h,) = world.sum(h)
    return 0.5 * (h + h.T)


def _hessian(function: Callable[..., torch.Tensor], u: torch.Tensor, *args: Any) -> torch.Tensor:
    """``grad^2 function(u, *args)``, reverse over reverse: the gradient with its graph, then
    its Jacobian one row per backward pass. Plain autograd rather than ``torch.func`` (whose
    first use imports ``torch._dynamo``), and row by row rather than one batched
    ``grad_outputs`` pass, which first imports sympy and was no faster at any size measured
    (``benchmarks/RESULTS.md``)."""
    size = u.shape[0]
    u = u.detach().requires_grad_(True)
    zeros = torch.zeros(size, size, dtype=u.dtype, device=u.device)
    value = function(u, *args)
    if not value.requires_grad:  # constant in u (flat priors)
        return zeros
    (gradient,) = torch.autograd.grad(value, u, create_graph=True, allow_unused=True)
    if gradient is None or not gradient.requires_grad:  # linear in u
        return zeros
    for i in range(size):
        (row,) = torch.autograd.grad(gradient[i], u, retain_graph=i < size - 1,
                                     allow_unused=True)
        if row is not None:
            zeros[i] = row.detach()
    return zeros


def _pass_gradient(
    log_joint: LogJoint, rows: Rows, u: torch.Tensor
) -> tuple[bool, torch.Tensor, torch.Tensor]:
    """Over one pass of ``rows``: whether ``log p(u, y)`` and its gradient are finite, that
    gradient, and its log-likelihood part ``grad_u sum_i log p(y_i | x_i, u)`` (the row
    sums summed over ``rows.world``)."""
    u = u.detach().requires_grad_(True)
    log_lik_gradient = torch.zeros_like(u)
    total = torch.zeros((), dtype=torch.float64)
    with batched_evaluation():
        for xs, y in rows.passes():
            value = log_joint.log_lik(u, xs, y)
            total = total + value.detach()
            log_lik_gradient += gradient_of(value, u)
        total, log_lik_gradient = rows.world.sum(total, log_lik_gradient)
        finite = bool(torch.isfinite(total))
        log_prior = log_joint.log_prior(u)
        prior_gradient = gradient_of(log_prior, u)
    finite = finite and bool(torch.isfinite(log_prior))
    gradient = log_lik_gradient + prior_gradient
    return finite and bool(torch.isfinite(gradient).all()), gradient, log_lik_gradient


def _newton(
    log_joint: LogJoint, rows: Rows, loc: torch.Tensor, precision: torch.Tensor,
    max_iter: int = 20,
) -> tuple[torch.Tensor, torch.Tensor, bool, int]:
    """Polish the mode with Newton steps ``u += H^{-1} grad log p(u, y)`` on all rows.

    Only gradients are used (no function values), so the result keeps the accuracy of the
    gradient even in float32 on a million rows, where a line search on the objective's value
    cannot resolve a step of one posterior sd. Stops when the Newton decrement
    ``g^T H^{-1} g`` (in squared posterior sds) is below ``1e-8`` per parameter; a step
    that does not shrink it is retaken at half the length from the best point so far, unless
    that point is within ``_ROUNDING_FLOOR`` (0.01 sd): there the gradient's rounding is what
    is left (float32 sums over 10^8 rows stall near 5e-4 sd, where halving the step twenty
    times took twenty passes).
    Returns the point, its log-likelihood gradient, whether it converged and the passes
    over the rows (one per iteration).
    """
    precond, _ = whitening(precision, diagonal=False)
    threshold = 1e-8 * loc.shape[0]
    best_loc, best_decrement, best_step = loc, math.inf, None
    best_log_lik = torch.zeros_like(loc)
    step_size = 1.0
    for iteration in range(1, max_iter + 1):
        finite, gradient, log_lik_gradient = _pass_gradient(log_joint, rows, loc)
        whitened = precond.T @ gradient
        decrement = float(whitened.double().pow(2).sum()) if finite else math.inf
        if decrement < threshold:
            return loc, log_lik_gradient, True, iteration
        if decrement < best_decrement:
            best_loc, best_decrement, best_step = loc, decrement, precond @ whitened
            best_log_lik = log_lik_gradient
        elif best_step is None:
            raise _NonFinite(loc)
        elif best_decrement < _ROUNDING_FLOOR * loc.shape[0]:  # within 0.01 sd, no better
            return best_loc, best_log_lik, True, iteration
        else:  # the last step made things worse: go back and take half of it
            step_size *= 0.5
        loc = best_loc + step_size * best_step
    return best_loc, best_log_lik, False, max_iter


def _world_gradient(
    objective: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, world: World
) -> torch.Tensor:
    """``grad objective(u)``, summed over the processes of ``world``."""
    u = u.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(objective(u), u)
    (gradient,) = world.sum(gradient)
    return gradient.detach()


def _secant_holds(precision: torch.Tensor, step: torch.Tensor, change: torch.Tensor) -> bool:
    """Whether the curvature ``H`` still describes the gradient's ``change`` over ``step``
    (``change ≈ -H step``), to 2% of the step's length in posterior sds: ``|T^T (change + H
    step)| <= 0.02 |step|_H`` with ``T`` the whitening of ``H``. A quadratic log density
    (a linear-Gaussian model) passes; one whose curvature moved along the step does not.
    Only the direction of the step is tested: the curvature at the end may differ more,
    and in other directions, without failing it."""
    h = precision.double()
    step, change = step.double(), change.double()
    precond, _ = whitening(h, diagonal=False)
    residual = precond.double().T @ (change + h @ step)
    return float(residual.norm()) <= _SECANT_TOLERANCE * float((step @ h @ step).sqrt())


def whitening(precision: torch.Tensor, diagonal: bool) -> tuple[torch.Tensor, bool]:
    """``T`` with ``T T^T ≈ precision^{-1}`` (``(P,P)``), or ``1/sqrt(diag)`` if ``diagonal``.

    The precision is first scaled to unit diagonal, ``C = D^{-1/2} H D^{-1/2}``, so that a
    badly scaled but well-posed problem (a calendar year as predictor) keeps full accuracy;
    then ``T = D^{-1/2} V Lambda^{-1/2}`` from ``C = V Lambda V^T``. Eigenvalues of ``C`` are
    floored at ``1e-12`` (and non-positive diagonals at the largest one's ``1e-12``) so a flat
    or saddle direction still gets a finite scale; the flag says whether that was needed.
    """
    h = 0.5 * (precision.double() + precision.double().T)
    d = h.diagonal()
    d_floor = 1e-12 * d.abs().max().clamp_min(1e-300)
    positive = bool((d > d_floor).all())
    d = torch.where(d > d_floor, d, d_floor).sqrt()
    if diagonal:
        return (1.0 / d).to(precision.dtype), positive
    eigvals, eigvecs = torch.linalg.eigh(h / d[:, None] / d[None, :])
    positive = positive and bool((eigvals > 1e-12).all())
    eigvals = eigvals.clamp_min(1e-12)
    return (eigvecs * eigvals.rsqrt() / d[:, None]).to(precision.dtype), positive


def laplace(
    log_joint: LogJoint,
    data: Data,
    start: torch.Tensor,
    generator: torch.Generator,
    max_curvature_rows: int,
    max_iter: int = 500,
    world: World | None = None,
) -> LaplaceResult:
    """Find the mode on all of ``data`` and the curvature on at most ``max_curvature_rows``
    (in a data-parallel fit over ``world``, ``data`` is this process's rows and it takes
    its part of the curvature rows)."""
    world = world or World()
    xs, y = data
    n_rows = y.shape[0]
    n_data = world.total(n_rows)
    cap = max(1, max_curvature_rows * n_rows // n_data)
    if n_rows > cap:
        index = torch.randperm(n_rows, generator=generator)[:cap]
        subset: Data = (tuple(x[index] for x in xs), y[index])
    else:
        subset = data
    rows = Rows.shard(data, world)
    return laplace_from_subset(log_joint, subset, rows, n_data, start, max_iter, n_rows=n_rows)


def laplace_from_subset(
    log_joint: LogJoint,
    subset: Data,
    rows: Rows,
    n_data: int,
    start: torch.Tensor,
    max_iter: int = 500,
    *,
    n_rows: int,
) -> LaplaceResult:
    """The mode of ``log p(u) + (N/n) log p(y_subset | u)`` by L-BFGS and the curvature
    there, the mode then polished by Newton steps on every row of ``rows`` (``N`` rows).
    In a data-parallel fit (``rows.world``) each process passes its subset of its
    ``n_rows`` rows, and every sum is summed over the processes."""
    world = rows.world
    as_data_size, weight = world.shard_scale(n_rows, n_data)

    def per_datum(part: Data) -> Callable[[torch.Tensor], torch.Tensor]:
        """``-log p(u, y) / N``, the log-likelihood of ``part`` scaled up to all ``N`` rows
        (this process's share of it, ``World.shard_scale``)."""
        sub_xs, sub_y = part
        scale = as_data_size / sub_y.shape[0]

        def objective(u: torch.Tensor) -> torch.Tensor:
            with batched_evaluation():
                return -weight * log_joint.single(u, sub_xs, sub_y, scale) / as_data_size

        return objective

    eye = torch.eye(start.shape[0], dtype=start.dtype)
    try:
        first, converged, n_eval = _lbfgs(per_datum(subset), start, eye, max_iter, world,
                                          n_data)
        precision = _curvature(log_joint, first, subset, n_rows, world)
        at = first  # where the curvature was taken
        loc, log_lik_gradient, newton_converged, passes = _newton(
            log_joint, rows, at, precision, max_iter=_CHORD_PASSES)
        if not newton_converged and not torch.equal(loc, at):  # slow: take H where it reached
            at = loc
            precision = _curvature(log_joint, at, subset, n_rows, world)
            loc, log_lik_gradient, newton_converged, more = _newton(
                log_joint, rows, at, precision)
            passes += more
        step = (loc - at).double()
        if float(step @ precision.double() @ step) > _SAME_CURVATURE:
            # the curvature's rows' gradient change over the step, as taking it again would see
            objective = per_datum(subset)
            change = -n_data * (_world_gradient(objective, loc, world)
                                - _world_gradient(objective, at, world))
            if not _secant_holds(precision, step, change):
                precision = _curvature(log_joint, loc, subset, n_rows, world)
        converged, n_eval = converged or newton_converged, n_eval + passes
    except _NonFinite as error:
        values = {k: v.tolist() for k, v in log_joint.layout.values(error.point).items()}
        raise DivergenceError(
            f"the log-density diverged (NaN or inf) at parameter values {values} while "
            "searching for the posterior mode: check that each parameter's support (from its "
            "prior or support=) matches how forward uses it, and the data's scale (a learned "
            "noise scale on data the model fits exactly, every residual 0, has no posterior "
            "mode)"
        ) from None
    _, positive = whitening(precision, diagonal=False)
    return LaplaceResult(loc, precision, converged, n_eval, positive, log_lik_gradient, passes)
