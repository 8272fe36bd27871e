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
) -> Minimum:
    """Minimise ``f`` from ``start`` (a flat tensor); ``loss_and_grad(u)`` returns
    ``(f(u), grad f(u))`` as tensors of ``start``'s dtype. Iterations stop when every
    gradient entry is below ``gradient_tolerance`` or the relative decrease of ``f`` is at
    float64 precision.

    An infinite value, or a non-finite gradient, met by a trial step (into a region where a
    model's log density overflows) is reported to the line search as a very large value, so
    it steps back. A NaN value anywhere, or anything non-finite at ``start``, raises
    :class:`NonFinite`.
    """
    dtype, device = start.dtype, start.device
    wall = float(np.finfo(np.float64).max ** 0.5)
    first = True

    def wrapped(v: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal first
        u = torch.tensor(v, dtype=dtype, device=device)
        value, grad = loss_and_grad(u)
        if not (bool(torch.isfinite(value)) and bool(torch.isfinite(grad).all())):
            if first or bool(torch.isnan(value)):
                raise NonFinite(u)
            return wall, np.zeros_like(v)
        first = False
        return float(value), grad.detach().double().cpu().numpy()

    result = scipy_minimize(
        wrapped,
        start.detach().double().cpu().numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxfun": max_evaluations, "maxiter": max_evaluations, "maxcor": 20,
                 "gtol": gradient_tolerance, "ftol": 1e-15},
    )
    point = torch.from_numpy(result.x).to(dtype=dtype, device=device)
    return Minimum(point, bool(result.success), int(result.nfev))
