"""Distributions that ``torch.func.vmap`` can batch where torch's own cannot."""

from __future__ import annotations

import torch
from torch.distributions import Chi2, StudentT

__all__ = ["FiniteVarianceStudentT"]


class FiniteVarianceStudentT(StudentT):
    """``StudentT`` known to have ``df > 2``: ``mean = loc``, ``variance = scale^2 df / (df - 2)``
    without the masking for small ``df``, and draws ``loc + scale Z / sqrt(V / df)``
    (``Z ~ N(0, 1)``, ``V ~ chi2(df)``) from noise shaped like ``loc``, both of which
    ``torch.func.vmap`` can batch."""

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        normal = torch.randn_like(self.loc.expand(shape))
        chi2 = Chi2(self.df.expand(shape)).rsample()
        return self.loc + self.scale * normal * torch.rsqrt(chi2 / self.df)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.expand(self.batch_shape)

    @property
    def variance(self) -> torch.Tensor:
        return (self.scale.pow(2) * self.df / (self.df - 2)).expand(self.batch_shape)
