"""``AffineFamily``: a fitted family read through ``theta = A theta_inner + b``, exactly."""

from __future__ import annotations

import pytest
import torch

from noisybayes.math.affine import AffineFamily
from noisybayes.math.families import Draws, FullRank, LowRank, MeanField


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


@pytest.mark.parametrize("kind", [MeanField, LowRank, FullRank])
def test_recentring_keeps_q_and_gives_unit_sds_in_z(kind):
    """``recentre`` changes coordinates, not ``q``: the mean, covariance, entropy and the
    density of the same ``theta`` are unchanged to rounding; each ``z_j`` has sd 1 and mean 0,
    and the old ``z`` is ``loc + D z_new``."""
    g = torch.Generator().manual_seed(3)
    p = 5
    family = kind(torch.randn(p, generator=g, dtype=torch.float64),
                  torch.rand(p, generator=g, dtype=torch.float64) + 0.5)
    with torch.no_grad():
        for param in family.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=g, dtype=param.dtype))
    before = family.draw(6, generator=torch.Generator().manual_seed(4))
    mean, cov, entropy = family.mean(), family.covariance(), family.entropy()
    log_q, loc = family.log_prob(before), family.loc.detach().clone()
    sd = family.recentre()
    torch.testing.assert_close(family.mean(), mean)
    torch.testing.assert_close(family.covariance(), cov)
    torch.testing.assert_close(family.entropy(), entropy)
    z_new = (before.z - loc) / sd
    torch.testing.assert_close(family.to_theta(z_new), before.theta)
    torch.testing.assert_close(family.log_prob(Draws(before.theta, z_new)), log_q)
    torch.testing.assert_close(family.z_factor().pow(2).sum(1), torch.ones(p, dtype=torch.float64))
    assert not family.loc.any()

