"""The Laplace start: the mode, and when its curvature is taken again."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import HalfCauchy, Normal

import noisybayes as nb
import noisybayes.infer.laplace as laplace_module
from noisybayes.infer.laplace import _secant_holds, laplace
from noisybayes.infer.objective import LogJoint
from noisybayes.model.layout import ParamLayout
from tests.reference_models import Regression
from tests.test_conjugate_fit import NOISE, PRIOR_SCALE, KnownNoiseLine


def _spd(size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(size, size, generator=g, dtype=torch.float64)
    return a @ a.T + size * torch.eye(size, dtype=torch.float64)


def test_the_secant_holds_for_a_quadratic_and_not_for_a_moved_curvature():
    """A quadratic's gradient changes by ``-H step`` exactly; one whose curvature is 10%
    larger along the step misses by 10% of the step's length, beyond the 2% tolerance;
    a change off by 1% of it passes."""
    h = _spd(5, 0)
    step = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert _secant_holds(h, step, -h @ step)
    assert not _secant_holds(h, step, -1.1 * h @ step)
    assert _secant_holds(h, step, -1.01 * h @ step)


def test_a_linear_gaussian_model_keeps_its_one_curvature(monkeypatch):
    """4,000 rows, the curvature on 1,000 of them: the mode found there is polished on all
    rows (well over 0.1 sd away), and the gradients met agree with the curvature, so it is
    not taken a second time. The mode is the exact posterior mean (the polish stops at a
    Newton decrement of 1e-8 squared sds per parameter, about 1e-4 sd; 1e-3 leaves room), and the
    subset's curvature is the exact precision up to its sampling error (about
    ``1/sqrt(1000)`` = 3% of an entry; 15% is five of those)."""
    calls = []
    original = laplace_module._curvature
    monkeypatch.setattr(laplace_module, "_curvature",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4000, 3, generator=g, dtype=torch.float64) + 1.0
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + NOISE * torch.randn(
        4000, generator=g, dtype=torch.float64)
    exact = nb.gaussian_linear_posterior(x, y, NOISE, 0.0, PRIOR_SCALE**-2)
    model = KnownNoiseLine(3)
    log_joint = LogJoint(model, ParamLayout(model))
    mode = laplace(log_joint, ((x,), y), torch.zeros(3, dtype=torch.float64),
                   torch.Generator().manual_seed(0), max_curvature_rows=1000)
    assert len(calls) == 1
    assert ((mode.loc - exact.loc) / exact.scale).abs().max() < 1e-3
    exact_precision = torch.linalg.inv(exact.covariance)
    relative = (mode.precision - exact_precision).abs() / exact_precision.diagonal().max()
    assert relative.max() < 0.15


def test_a_search_past_an_overflowing_step_reaches_the_minimum():
    """``exp(u) - 5u`` (minimum at ``log 5``) whose value overflows past ``u = 1.7``: from
    0, L-BFGS-B's second step lands beyond it, and its line search ended there (0.61 short
    of the minimum) until the search was started again with shorter first steps."""
    from noisybayes.infer.minimize import minimize

    def loss_and_grad(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if float(u[0]) > 1.7:
            return torch.tensor(float("inf"), dtype=u.dtype), torch.full_like(u, float("nan"))
        return (u.exp() - 5 * u).sum(), u.exp() - 5

    found = minimize(loss_and_grad, torch.zeros(1, dtype=torch.float64), max_evaluations=100,
                     gradient_tolerance=1e-9)
    assert abs(float(found.point[0]) - math.log(5)) < 1e-6


@pytest.mark.parametrize("unit_curvature, evaluations", [(False, 3), (True, 2)])
def test_a_unit_curvature_start_near_the_minimum_takes_the_newton_step(unit_curvature,
                                                                       evaluations):
    """``|u - c|^2 / 2`` from 0 with ``|c| = 0.05`` (a whitened fixed-draw ELBO started at
    the Laplace answer): L-BFGS-B's unit first step overshoots twentyfold and its line search
    interpolates back (3 evaluations); scaled to the gradient step, the first step lands on
    the minimum (2)."""
    from noisybayes.infer.minimize import minimize

    centre = torch.tensor([0.03, -0.04], dtype=torch.float64)
    calls = []

    def loss_and_grad(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(u)
        return 0.5 * (u - centre).square().sum(), u - centre

    found = minimize(loss_and_grad, torch.zeros(2, dtype=torch.float64), max_evaluations=100,
                     gradient_tolerance=1e-9, unit_curvature=unit_curvature)
    assert torch.allclose(found.point, centre, atol=1e-12)
    assert found.n_evaluations == len(calls) == evaluations


def test_the_float32_seed_line_mode_search_reaches_the_mode():
    """The seed question's line in float32 (1,000 rows): a trial step to sigma = exp(-31)
    overflows the float32 gradient of the log scale; the mode search used to stop there,
    0.1 nats per row short, and the Newton polish took 11 passes (a curvature 8% off in the
    log scale). The search now reaches the float64 fit's mode (within 1e-3 sd: float32
    rounding of the rows) and the polish needs few passes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=g)
    x32 = torch.stack([torch.ones(1000), x], dim=1)
    y32 = 1.0 + 2.0 * x + 0.5 * torch.randn(1000, generator=g)
    model = Regression(2, Normal(0.0, 10.0), HalfCauchy(2.5))
    log_joint = LogJoint(model, ParamLayout(model))
    modes = []
    for x, y in ((x32, y32), (x32.double(), y32.double())):
        modes.append(laplace(log_joint, ((x,), y), torch.zeros(3, dtype=x.dtype),
                             torch.Generator().manual_seed(0), max_curvature_rows=50_000))
    sd = torch.linalg.inv(modes[1].precision).diagonal().sqrt()
    assert ((modes[0].loc.double() - modes[1].loc) / sd).abs().max() < 1e-3
    assert modes[0].n_passes <= 3


def test_the_newton_polish_stops_at_the_rounding_floor_of_its_gradient(monkeypatch):
    """A gradient that carries noise of 5e-4 sd at every point (float32 sums over 10^8 rows
    do) never meets the 1e-8 decrement: the polish stops at the first step that does not
    improve on a point within 0.01 sd, in a few passes instead of twenty, converged there."""
    h = _spd(4, 3)
    mode = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    precond, _ = laplace_module.whitening(h, diagonal=False)
    noise = torch.Generator().manual_seed(4)

    def noisy_gradient(log_joint, rows, u):  # d log p = -H (u - mode) + rounding noise
        rounding = torch.linalg.solve(precond.T, 5e-4 * torch.randn(4, generator=noise,
                                                                    dtype=torch.float64))
        gradient = -h @ (u - mode) + rounding
        return True, gradient, gradient

    monkeypatch.setattr(laplace_module, "_pass_gradient", noisy_gradient)
    start = mode + 3.0 * precond @ torch.ones(4, dtype=torch.float64)  # 3 sd away
    loc, _, converged, passes = laplace_module._newton(None, None, start, h)
    assert converged and passes <= 5
    assert float((precond.T @ h @ (loc - mode)).norm()) < 0.01
