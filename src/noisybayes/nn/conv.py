"""``BayesConv2d``: a 2-D convolution with a mean-field Gaussian posterior, sampled by Flipout.

    y = conv(x, W_loc) + conv(x * s_in, dW) * s_out + b,   dW = weight_scale * eps

One perturbation ``dW`` per forward pass, decorrelated across examples by random signs
``s_in`` (per example and input channel) and ``s_out`` (per example and output channel),
as in Wen et al. 2018; the bias gets independent noise per example and channel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution
from torch.nn.modules.utils import _pair

from noisybayes._checks import check_positive_int
from noisybayes.nn.linear import rademacher
from noisybayes.nn.priors import check_prior
from noisybayes.nn.weights import NoisyWeightLayer

__all__ = ["BayesConv2d"]

_IntOr2 = int | tuple[int, int]


class BayesConv2d(NoisyWeightLayer):
    """``nn.Conv2d`` (zero padding) with ``W ~ N(weight_loc, weight_scale^2)`` elementwise.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias:
            as in ``nn.Conv2d`` (``padding`` an int or pair).
        prior, init_scale, bayesian_bias: as in :class:`BayesLinear`; ``fan_in`` is
            ``in_channels / groups * kernel height * kernel width``.

    Shapes: ``(N, C_in, H, W)`` to ``(N, C_out, H_out, W_out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOr2,
        stride: _IntOr2 = 1,
        padding: _IntOr2 = 0,
        dilation: _IntOr2 = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        prior: Distribution | None = None,
        init_scale: float = 0.1,
        bayesian_bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("groups", groups)):
            check_positive_int(name, value)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups must divide in_channels ({in_channels}) and out_channels "
                             f"({out_channels}), got {groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.prior = check_prior(prior)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self._init_weights(
            shape, init_scale, bias, bayesian_bias, {"device": device, "dtype": dtype}
        )

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, *, bayesian_bias: bool = True, **kwargs) -> BayesConv2d:
        """A ``BayesConv2d`` whose means are ``layer``'s weights (zero padding only)."""
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"layer must use numeric zero padding, got padding={layer.padding!r}"
                             f", padding_mode={layer.padding_mode!r}")
        w = layer.weight
        geometry: dict[str, Any] = {"kernel_size": layer.kernel_size, "stride": layer.stride,
                                    "padding": layer.padding, "dilation": layer.dilation}
        new = cls(
            layer.in_channels, layer.out_channels, **geometry, groups=layer.groups,
            bias=layer.bias is not None, bayesian_bias=bayesian_bias, device=w.device,
            dtype=w.dtype, **kwargs,
        )
        new._copy_means(layer)
        return new

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One Flipout draw per example: ``(N, C_in, H, W)`` to ``(N, C_out, H', W')``."""
        if x.ndim != 4:
            raise ValueError(f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
        mean = self._conv(x, self.weight_loc, self._bias_mean())
        if self.use_mean:
            return mean
        n = x.shape[0]
        delta = self.weight_scale * torch.randn_like(self.weight_loc)
        sign_in = rademacher((n, self.in_channels, 1, 1), x)
        sign_out = rademacher((n, self.out_channels, 1, 1), mean)
        out = mean + self._conv(x * sign_in, delta, None) * sign_out
        bias_scale = self.bias_scale
        if bias_scale is not None:
            noise = torch.randn((n, self.out_channels, 1, 1), dtype=mean.dtype, device=mean.device)
            out = out + bias_scale.view(1, -1, 1, 1) * noise
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, flipout, prior={self.prior}")
