"""Noise of a fixed size on activations: regularisers, not posteriors.

``GaussianDropout(p)`` multiplies each activation by ``1 + sqrt(alpha) eps`` with
``alpha = p / (1 - p)``, the variance of Bernoulli dropout's rescaled mask
(Srivastava et al. 2014). ``GaussianNoise(scale)`` adds ``scale * eps``. Both are the
identity in eval mode, like ``nn.Dropout``.

What the multiplicative noise is: an activation ``h_i`` scaled by ``xi_i ~ N(1, alpha)`` is
seen by the next linear layer as column ``i`` of its weights scaled by ``xi_i``, so each
weight ``w_ji xi_i`` has mean ``w_ji`` and variance ``alpha w_ji^2``. Each pre-activation
``sum_i w_ji h_i xi_i`` then has mean ``sum_i w_ji h_i`` and variance
``alpha sum_i w_ji^2 h_i^2``, exactly the local reparameterization of independent weights
``N(w, alpha w^2)`` (Kingma, Salimans & Welling 2015); only the correlation between two
outputs differs (they share ``xi``, where independent weights would not). With ``alpha``
fixed by hand
that is a noise level, not a posterior: nothing in the loss sets it from the data. Learning
``alpha`` against the log-uniform prior makes it variational dropout
(:class:`~noisybayes.nn.VariationalDropoutLinear`). Additive noise of a fixed size has no
such reading: its size is a hyper-parameter, chosen by validation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from noisybayes._checks import is_number

__all__ = ["GaussianDropout", "GaussianNoise"]


def _check_rate(p: float) -> float:
    if not is_number(p) or not 0 <= p < 1:
        raise ValueError(f"p must be a number in [0, 1), got {p!r}")
    return float(p)


class GaussianDropout(nn.Module):
    """``x * (1 + sqrt(alpha) eps)``, ``eps ~ N(0, 1)`` per element, ``alpha = p / (1 - p)``.

    Args:
        p: the dropout rate it stands in for, in ``[0, 1)``; ``p = 0`` is the identity.

    Shapes: any; the output has the input's shape. In eval mode, the identity.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_rate(p)

    @property
    def alpha(self) -> float:
        """The noise variance ``alpha = p / (1 - p)``."""
        return self.p / (1 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (1 + math.sqrt(self.alpha) * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"p={self.p:g}, alpha={self.alpha:g}"


class GaussianNoise(nn.Module):
    """``x + scale * eps``, ``eps ~ N(0, 1)`` per element.

    Args:
        scale: the noise sd, a finite number ``>= 0`` in the units of ``x``.

    Shapes: any; the output has the input's shape. In eval mode, the identity.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        if not (is_number(scale) and 0 <= scale < math.inf):
            raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.scale == 0:
            return x
        return x + self.scale * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"
