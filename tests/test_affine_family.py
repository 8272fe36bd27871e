"""``AffineFamily``: a fitted family read through ``theta = A theta_inner + b``, exactly."""

from __future__ import annotations

import pytest
import torch

from noisybayes.math.affine import AffineFamily
from noisybayes.math.families import FullRank, LowRank, MeanField


@pytest.mark.parametrize("kind", [MeanField, LowRank, FullRank])
def test_the_moments_density_and_entropy_follow_the_map(kind):
    g = torch.Generator().manual_seed(0)
    p = 4
    shift = torch.randn(p, generator=g, dtype=torch.float64)
    inner = kind(shift, torch.rand(p, generator=g, dtype=torch.float64) + 0.5)
    with torch.no_grad():
        for param in inner.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=g, dtype=param.dtype))
    A = torch.randn(p, p, generator=g, dtype=torch.float64) + 3 * torch.eye(p, dtype=torch.float64)
    b = torch.randn(p, generator=g, dtype=torch.float64)
    mapped = AffineFamily(inner, A, b)
    torch.testing.assert_close(mapped.mean(), A @ inner.mean() + b)
    torch.testing.assert_close(mapped.covariance(), A @ inner.covariance() @ A.T)
    torch.testing.assert_close(mapped.variance(), (A @ inner.covariance() @ A.T).diagonal())
    log_det = torch.linalg.slogdet(A)[1]
    torch.testing.assert_close(mapped.entropy(), inner.entropy() + log_det)
    draws = mapped.draw(5, generator=torch.Generator().manual_seed(1))
    inner_draws = inner.draw(5, generator=torch.Generator().manual_seed(1))  # the same noise
    torch.testing.assert_close(draws.theta, inner_draws.theta @ A.T + b)
    torch.testing.assert_close(mapped.log_prob(draws), inner.log_prob(inner_draws) - log_det)
    torch.testing.assert_close(mapped.log_prob(draws), mapped.distribution().log_prob(draws.theta))
