"""Pareto smoothing against ArviZ's ``psislw`` (the reference implementation)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from noisybayes.math.psis import khat_standard_error, pareto_smoothed_log_weights, tail_length


def _arviz_psislw(log_ratios: torch.Tensor) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from arviz import psislw

        values = log_ratios.double().numpy()
        log_weights, khat = psislw(values - values.max())
    return np.asarray(log_weights), float(khat)


def _ratios(kind: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "light":  # log-normal weights: thin tail, k < 0.5
        return 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    if kind == "pareto":  # exact Pareto tail with k = 0.8: log r = k * Exp(1)
        return -0.8 * torch.rand(n, generator=g, dtype=torch.float64).log()
    return torch.distributions.StudentT(3.0).sample((n,)).double()  # heavier than Gaussian


@pytest.mark.parametrize("kind", ["light", "pareto", "student"])
@pytest.mark.parametrize("n", [100, 4000, 50_000])
def test_matches_arviz_psislw(kind, n):
    ratios = _ratios(kind, n, seed=n)
    log_weights, khat = pareto_smoothed_log_weights(ratios)
    expected_weights, expected_khat = _arviz_psislw(ratios)
    assert khat == pytest.approx(expected_khat, abs=1e-10)
    np.testing.assert_allclose(log_weights.numpy(), expected_weights, rtol=0, atol=1e-10)


def test_recovers_a_known_pareto_shape():
    """Log ratios ``k E`` with ``E ~ Exp(1)`` are exactly Pareto with shape ``k``; the
    estimate lands within three of its standard errors."""
    n = 100_000
    for k in (0.2, 0.6, 0.9):
        ratios = -k * torch.rand(n, generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64).log()
        _, khat = pareto_smoothed_log_weights(ratios)
        assert abs(khat - k) < 3 * khat_standard_error(k, n), (k, khat)


def test_tail_length_is_the_reference_rule():
    assert [tail_length(n) for n in (10, 100, 4000, 100_000)] == [2, 20, 190, 949]
