"""``BayesLinear``: a fully connected layer with a mean-field Gaussian posterior on its weights.

    y = x W^T + b,   W_ij ~ N(weight_loc_ij, weight_scale_ij^2),   b_j ~ N(bias_loc_j, ...)

Local reparameterization (the default; Kingma, Salimans & Welling 2015) samples each row's
pre-activations instead of the weights: ``y_j ~ N(x . loc_j + bias_loc_j,
(x^2) . scale_j^2 + bias_scale_j^2)``, exact in distribution for one row and independent
across rows, which lowers the gradient variance. Flipout (Wen et al. 2018) draws one
weight perturbation ``dW = scale * eps`` and decorrelates rows with random signs:
``y = x W_loc^T + ((x * s_in) dW^T) * s_out``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from noisybayes._checks import check_positive_int
from noisybayes.nn.graph_gradients import fused_nodes_allowed, plain_gradients
from noisybayes.nn.priors import check_prior
from noisybayes.nn.weights import NoisyWeightLayer

__all__ = ["BayesLinear", "LocalReparameterization", "local_reparameterization", "rademacher"]


def rademacher(shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Independent random signs ``+-1`` of ``shape``, with ``like``'s dtype and device."""
    # out of place, so that vmap (a Mixture's training) can draw different signs per member
    return torch.randint(0, 2, shape, dtype=like.dtype, device=like.device) * 2 - 1


class LocalReparameterization(torch.autograd.Function):
    """``y = x loc^T + b + sqrt(x^2 scale^2^T + bias_scale^2) * noise``, ``scale =
    softplus(scale_free)``, as one autograd node with its gradient written out (with ``g =
    dL/dy`` and ``h = g * noise / sd = 2 dL/d variance``, ``sd`` the square root): ``dL/dx =
    g loc + x (h scale^2)``, ``dL/d loc = g^T x``, ``dL/db = sum g``, ``dL/d scale_free = (h^T
    x^2) scale sigmoid(scale_free)``, the bias scale's likewise with ``sum h``. The same
    numbers as the dozen operations it replaces, at a fraction of their cost per step on small
    layers; not for ``torch.func`` transforms (``BayesLinear`` then uses the operations).
    Under ``create_graph=True`` the gradient is autograd's of those operations
    (:func:`~noisybayes.nn.graph_gradients.plain_gradients`), so second derivatives hold."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, loc: torch.Tensor, scale_free: torch.Tensor,
                bias_loc: torch.Tensor | None, bias_scale_free: torch.Tensor | None,
                noise: torch.Tensor) -> torch.Tensor:
        scale = F.softplus(scale_free)
        scale_square = scale.square()
        bias_scale = None if bias_scale_free is None else F.softplus(bias_scale_free)
        square = x * x
        variance = F.linear(square, scale_square,
                            None if bias_scale is None else bias_scale.square())
        sd = variance.clamp_min(1e-30).sqrt()
        # h / g, zero where the clamp holds the variance (its gradient does not pass there)
        ratio = torch.where(variance >= 1e-30, noise / sd, 0.0)
        ctx.save_for_backward(x, loc, scale_free, bias_loc, bias_scale_free, noise, scale,
                              scale_square, bias_scale, square, sd, ratio)
        return torch.addcmul(F.linear(x, loc, bias_loc), sd, noise)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x, loc, scale_free, bias_loc, bias_scale_free, noise, scale, scale_square, bias_scale,
         square, sd, ratio) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a second derivative may follow
            inputs = (x, loc, scale_free, bias_loc, bias_scale_free, noise)
            return plain_gradients(local_reparameterization, inputs, ctx.needs_input_grad, grad)
        twice = grad * ratio  # 2 dL/d variance
        g, h = grad.reshape(-1, grad.shape[-1]), twice.reshape(-1, twice.shape[-1])
        need = ctx.needs_input_grad
        grad_x = grad_loc = grad_scale_free = grad_bias = grad_bias_scale_free = None
        if need[0]:
            grad_x = torch.addcmul(grad @ loc, x, twice @ scale_square)
        if need[1]:
            grad_loc = g.t() @ x.reshape(-1, x.shape[-1])
        if need[2]:
            grad_scale_free = (h.t() @ square.reshape(-1, square.shape[-1])) * scale
            grad_scale_free *= torch.sigmoid(scale_free)
        if need[3]:
            grad_bias = g.sum(0)
        if need[4]:
            grad_bias_scale_free = h.sum(0) * bias_scale * torch.sigmoid(bias_scale_free)
        grad_noise = grad * sd if need[5] else None
        return grad_x, grad_loc, grad_scale_free, grad_bias, grad_bias_scale_free, grad_noise


def local_reparameterization(
    x: torch.Tensor, loc: torch.Tensor, scale_free: torch.Tensor, bias_loc: torch.Tensor | None,
    bias_scale_free: torch.Tensor | None, noise: torch.Tensor,
) -> torch.Tensor:
    """``x loc^T + b + sqrt(x^2 softplus(scale_free)^2^T + bias_scale^2) * noise`` in plain
    operations (what :class:`LocalReparameterization` computes as one node)."""
    bias_variance = None if bias_scale_free is None else F.softplus(bias_scale_free).square()
    variance = F.linear(x * x, F.softplus(scale_free).square(), bias_variance)
    return torch.addcmul(F.linear(x, loc, bias_loc), variance.clamp_min(1e-30).sqrt(), noise)


class BayesLinear(NoisyWeightLayer):
    """A linear layer whose weights (and bias) have a factorised Gaussian posterior.

    Args:
        in_features, out_features: input and output widths.
        bias: whether the layer has a bias.
        prior: the per-weight prior, a scalar-event ``torch.distributions`` object;
            default ``Normal(0, 1)``. Non-Gaussian priors (e.g.
            :func:`noisybayes.nn.scale_mixture_prior`) get a Monte Carlo KL.
        init_scale: posterior sds start at ``init_scale / sqrt(in_features)``.
        flipout: use Flipout instead of local reparameterization.
        bayesian_bias: ``False`` keeps the bias a deterministic parameter ``bias``.

    Shapes: ``forward`` maps ``(*, in_features)`` to ``(*, out_features)``; each row gets
    its own noise. Means start as in ``nn.Linear``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        prior: Distribution | None = None,
        init_scale: float = 0.1,
        flipout: bool = False,
        bayesian_bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.prior = check_prior(prior)
        self.flipout = bool(flipout)
        self._init_weights(
            (out_features, in_features), init_scale, bias, bayesian_bias,
            {"device": device, "dtype": dtype},
        )

    @classmethod
    def from_linear(cls, layer: nn.Linear, *, bayesian_bias: bool = True, **kwargs) -> BayesLinear:
        """A ``BayesLinear`` whose means are ``layer``'s current weights and bias."""
        w = layer.weight
        new = cls(
            layer.in_features, layer.out_features, layer.bias is not None,
            bayesian_bias=bayesian_bias, device=w.device, dtype=w.dtype, **kwargs,
        )
        new._copy_means(layer)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One posterior draw of ``x W^T + b`` per row: ``(*, in)`` to ``(*, out)``."""
        if self.use_mean:
            return F.linear(x, self.weight_loc, self._bias_mean())
        bias_scale = self.bias_scale
        if self.flipout:
            mean = F.linear(x, self.weight_loc, self._bias_mean())
            delta = self.weight_scale * torch.randn_like(self.weight_loc)
            sign_in = rademacher(x.shape, x)
            sign_out = rademacher(mean.shape, mean)
            out = mean + F.linear(x * sign_in, delta) * sign_out
            if bias_scale is not None:
                out = out + bias_scale * torch.randn_like(mean)
            return out
        noise = torch.randn((*x.shape[:-1], self.out_features), dtype=x.dtype, device=x.device)
        inputs = (x, self.weight_loc, self.weight_scale_free, self._bias_mean(),
                  self.bias_scale_free, noise)
        if fused_nodes_allowed():  # one autograd node
            return LocalReparameterization.apply(*inputs)
        return local_reparameterization(*inputs)

    def extra_repr(self) -> str:
        mode = "flipout" if self.flipout else "local reparameterization"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self._bias_mean() is not None}, {mode}, prior={self.prior}")
