"""Quasi-Newton minimisation of a differentiable torch function by SciPy's L-BFGS-B.

SciPy rather than ``torch.optim.LBFGS``: constructing any ``torch.optim`` optimiser imports
``torch._dynamo`` on first use, which takes longer than a whole small fit (see
``benchmarks/RESULTS.md``); ``scipy.optimize`` is already loaded with scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize as scipy_minimize

__all__ = ["Minimum", "NonFinite", "minimize"]

_RESTARTS = 3


class NonFinite(Exception):
    """``f`` is NaN at ``point`` (not a number: a model evaluated outside its domain), or
    ``f`` or its gradient is non-finite at the start, where there is nowhere to step back to."""

    def __init__(self, point: torch.Tensor) -> None:
        super().__init__("non-finite value or gradient")
        self.point = point


@dataclass(frozen=True)
class Minimum:
    """The minimiser found, whether L-BFGS-B reported convergence, and its evaluations."""

    point: torch.Tensor
    converged: bool
    n_evaluations: int


def minimize(
    loss_and_grad: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    start: torch.Tensor,
    *,
    max_evaluations: int,
    gradient_tolerance: float,
    value_tolerance: float = 1e-15,
    unit_curvature: bool = False,
) -> Minimum:
    """Minimise ``f`` from ``start`` (a flat tensor); ``loss_and_grad(u)`` returns
    ``(f(u), grad f(u))`` as tensors of ``start``'s dtype. Iterations stop when every
    gradient entry is below ``gradient_tolerance`` or an iteration decreases ``f`` by less
    than ``value_tolerance * max(|f|, 1)`` (by default: at float64 precision).

    An infinite value, or a non-finite gradient, met by a trial step (into a region where a
    model's log density overflows) is reported to the line search as a very large value, so
    it steps back. L-BFGS-B's line search may end there instead, at its last point (a float32
    gradient of a log scale overflows long before float64's would): a search that met such a
    value and stopped short of ``gradient_tolerance`` is started again from its last point,
    with fresh curvature pairs and a first step a quarter as long (L-BFGS-B's first step has
    unit length: the variables are scaled), up to ``_RESTARTS`` times within the
    evaluations. A NaN value
    anywhere, or anything non-finite at ``start``, raises :class:`NonFinite`.

    ``unit_curvature`` says that ``f``'s curvature is about 1 in every direction (whitened
    coordinates): the first step is then scaled to the gradient step ``-grad f(start)``,
    the Newton step of such an ``f``, when that is shorter than L-BFGS-B's unit length
    (from a start already near the minimum, a unit step overshoots and costs the line
    search an evaluation more).
    """
    dtype, device = start.dtype, start.device
    wall = float(np.finfo(np.float64).max ** 0.5)
    first, walled = True, False
    at_start: tuple[float, np.ndarray] | None = None  # f and its gradient at start, if taken

    def wrapped(v: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal first, walled
        if at_start is not None and np.array_equal(v, start_point):  # evaluated already
            return at_start
        u = torch.tensor(v, dtype=dtype, device=device)
        value, grad = loss_and_grad(u)
        if not (bool(torch.isfinite(value)) and bool(torch.isfinite(grad).all())):
            if first or bool(torch.isnan(value)):
                raise NonFinite(u)
            walled = True
            return wall, np.zeros_like(v)
        first = False
        return float(value), grad.detach().double().cpu().numpy()

    start_point = point = start.detach().double().cpu().numpy()
    evaluations, length = 0, 1.0
    if unit_curvature:
        at_start = wrapped(start_point)
        length = min(1.0, float(np.linalg.norm(at_start[1]))) or 1.0
    for _ in range(_RESTARTS + 1):
        walled, origin = False, point

        def scaled(w: np.ndarray, origin: np.ndarray = origin, length: float = length
                   ) -> tuple[float, np.ndarray]:
            value, grad = wrapped(origin + length * w)
            return value, length * grad

        result = scipy_minimize(
            scaled, np.zeros_like(origin), jac=True, method="L-BFGS-B",
            options={"maxfun": max_evaluations - evaluations, "maxiter": max_evaluations,
                     "maxcor": 20, "gtol": gradient_tolerance * length,
                     "ftol": value_tolerance},
        )
        point, evaluations = origin + length * result.x, evaluations + int(result.nfev)
        stopped_short = float(np.abs(result.jac).max()) > gradient_tolerance * length
        if not (walled and stopped_short) or evaluations >= max_evaluations:
            break
        length *= 0.25  # the first step of a search is of this length: shorter each time
    found = torch.from_numpy(point).to(dtype=dtype, device=device)
    return Minimum(found, bool(result.success), evaluations)
