"""What the Bayesian linear and convolution layers share: a weight (and bias) with a
factorised Gaussian posterior ``N(loc, softplus(scale_free)^2)`` and its KL to the prior."""

from __future__ import annotations

import math

import torch
from torch import nn

from noisybayes.nn.base import NoisyModule, free_scale, initial_scale, softplus_scale
from noisybayes.nn.graph_gradients import fused_nodes_allowed
from noisybayes.nn.priors import mean_field_kl, normal_kl_of_layers

__all__ = ["NoisyWeightLayer"]


class NoisyWeightLayer(NoisyModule):
    """Base of ``BayesLinear`` and ``BayesConv2d``: ``weight_loc``/``weight_scale_free`` and a
    bias that is Bayesian (``bias_loc``/``bias_scale_free``), deterministic (``bias``) or
    absent. Subclasses set ``prior`` and call :meth:`_init_weights`."""

    prior: torch.distributions.Distribution

    def _init_weights(
        self,
        shape: tuple[int, ...],
        init_scale: float,
        bias: bool,
        bayesian_bias: bool,
        factory: dict,
    ) -> None:
        """Means as PyTorch initialises ``nn.Linear``/``nn.Conv2d``; sds ``init_scale/sqrt(fan_in)``."""
        fan_in = math.prod(shape[1:])
        start = initial_scale(init_scale, fan_in)
        self.weight_loc = nn.Parameter(torch.empty(shape, **factory))
        nn.init.kaiming_uniform_(self.weight_loc, a=math.sqrt(5))
        self.weight_scale_free = free_scale(self.weight_loc.data, start)
        self.bias_loc: nn.Parameter | None = None
        self.bias_scale_free: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            init = torch.empty(shape[0], **factory).uniform_(-bound, bound)
            if bayesian_bias:
                self.bias_loc = nn.Parameter(init)
                self.bias_scale_free = free_scale(init, start)
            else:
                self.bias = nn.Parameter(init)

    def _copy_means(self, layer: nn.Linear | nn.Conv2d) -> None:
        """Take ``layer``'s current weight and bias as the posterior means."""
        with torch.no_grad():
            self.weight_loc.copy_(layer.weight)
            target = self._bias_mean()
            if layer.bias is not None and target is not None:
                target.copy_(layer.bias)

    @property
    def weight_scale(self) -> torch.Tensor:
        """Posterior sd of each weight, shaped like ``weight_loc``."""
        return softplus_scale(self.weight_scale_free)

    @property
    def bias_scale(self) -> torch.Tensor | None:
        """Posterior sd of each bias; ``None`` if the bias is deterministic or absent."""
        return None if self.bias_scale_free is None else softplus_scale(self.bias_scale_free)

    def _bias_mean(self) -> torch.Tensor | None:
        return self.bias_loc if self.bias_loc is not None else self.bias

    @property
    def fusable_kl(self) -> bool:
        """Whether :meth:`kl` is this class's closed form, so that layers with one prior can
        share one :class:`~noisybayes.nn.priors.SoftplusNormalKL` (``normal_kl_of_layers``)."""
        return type(self).kl is NoisyWeightLayer.kl

    def kl(self, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``KL(q(W, b) || p(W, b))``: closed form for a Normal prior, Monte Carlo otherwise."""
        if fused_nodes_allowed():
            fused, _ = normal_kl_of_layers([self])  # a Normal prior: one autograd node
            if fused:
                return fused[0]
        total = mean_field_kl(self.weight_loc, self.weight_scale, self.prior, generator=generator)
        if self.bias_loc is not None and self.bias_scale is not None:
            total = total + mean_field_kl(
                self.bias_loc, self.bias_scale, self.prior, generator=generator
            )
        return total
