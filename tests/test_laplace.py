"""The Laplace start: the mode, and when its curvature is taken again."""

from __future__ import annotations

import torch

import noisybayes as nb
import noisybayes.infer.laplace as laplace_module
from noisybayes.infer.laplace import _secant_holds, laplace
from noisybayes.infer.objective import LogJoint
from noisybayes.model.layout import ParamLayout
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
