"""Weight priors and the KL divergence of a mean-field Gaussian from them.

    KL(q || p) = sum_i KL(N(loc_i, scale_i^2) || p)        (closed form when registered)
    KL(q || p) ~= sum_i log q(w_i) - log p(w_i),  w ~ q   (one reparameterized draw otherwise)

Priors are ``torch.distributions`` objects with an empty event shape whose batch shape
broadcasts against the weight tensor (a scalar prior is the usual case). The improper
:class:`LogUniform` prior has no normaliser; its KL is registered with
``torch.distributions`` as the approximation of Molchanov et al. 2017, which makes any layer
with this prior variational dropout.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Normal, constraints, kl_divergence, register_kl
from torch.types import _size

from noisybayes._checks import is_number
from noisybayes.math.log_uniform import log_alpha, log_uniform_kl
from noisybayes.nn.graph_gradients import plain_gradients

__all__ = [
    "LogUniform",
    "SoftplusNormalKL",
    "ScaleMixturePrior",
    "check_prior",
    "default_prior",
    "has_closed_form_kl",
    "mean_field_kl",
    "normal_kl_of_layers",
    "normal_kl",
    "scale_mixture_prior",
]


def default_prior() -> Normal:
    """The default weight prior, ``Normal(0, 1)`` per weight (on standardised data)."""
    return Normal(0.0, 1.0)

_EMPTY = torch.Size()


class ScaleMixturePrior(Distribution):
    """``p(w) = weight N(w; 0, scale_1^2) + (1 - weight) N(w; 0, scale_2^2)``, per weight.

    Parameters are Python numbers, so the prior works on any device and dtype; its KL from
    a Gaussian has no closed form, so layers estimate it by Monte Carlo.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, weight: float = 0.5, scale_1: float = 1.0, scale_2: float = 0.0025):
        if not 0.0 < weight < 1.0:
            raise ValueError(f"weight must be in (0, 1), got {weight!r}")
        for name, value in (("scale_1", scale_1), ("scale_2", scale_2)):
            if not (is_number(value) and 0 < value < math.inf):
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.weight, self.scale_1, self.scale_2 = float(weight), float(scale_1), float(scale_2)
        super().__init__(torch.Size(), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log sum_k pi_k N(value; 0, s_k^2)``, elementwise."""
        terms = [math.log(p) - math.log(s) - 0.5 * math.log(2 * math.pi) - 0.5 * (value / s) ** 2
                 for p, s in ((self.weight, self.scale_1), (1 - self.weight, self.scale_2))]
        return torch.logaddexp(terms[0], terms[1])

    def sample(self, sample_shape: _size = _EMPTY) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        pick = torch.rand(shape) < self.weight
        scale = torch.where(pick, torch.tensor(self.scale_1), torch.tensor(self.scale_2))
        return scale * torch.randn(shape)

    @property
    def mean(self) -> torch.Tensor:
        return torch.tensor(0.0)

    @property
    def variance(self) -> torch.Tensor:
        return torch.tensor(self.weight * self.scale_1**2 + (1 - self.weight) * self.scale_2**2)

    def __repr__(self) -> str:
        return (f"ScaleMixturePrior(weight={self.weight:g}, scale_1={self.scale_1:g}, "
                f"scale_2={self.scale_2:g})")


def scale_mixture_prior(
    weight: float = 0.5, scale_1: float = 1.0, scale_2: float = 0.0025
) -> ScaleMixturePrior:
    """The scale mixture prior of Blundell et al. 2015 (defaults: ``-log scale_2 = 6``)."""
    return ScaleMixturePrior(weight, scale_1, scale_2)


class LogUniform(Distribution):
    """The improper log-uniform prior ``p(w) ∝ 1/|w|`` per weight: uniform in ``log|w|``.

    It is scale-invariant, so it penalises only a weight's noise-to-signal ratio
    ``alpha = scale^2 / loc^2``: a Gaussian posterior against it is variational dropout
    (Kingma, Salimans & Welling 2015), and with a ratio per weight the weights whose
    ``alpha`` grows large can be pruned (Molchanov, Ashukha & Vetrov 2017). ``log_prob`` is
    unnormalised and there are no draws; ``kl_divergence(Normal, LogUniform)`` is
    :func:`noisybayes.math.log_uniform.log_uniform_kl`, zero for ``alpha -> infinity``.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self) -> None:
        super().__init__(torch.Size(), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``-log|value|``, elementwise (up to the missing normaliser)."""
        return -torch.log(value.abs())

    def sample(self, sample_shape: _size = _EMPTY) -> torch.Tensor:
        raise NotImplementedError("LogUniform is improper (it does not integrate to 1): "
                                  "it has no draws")

    def __repr__(self) -> str:
        return "LogUniform()"


@register_kl(Normal, LogUniform)
def _kl_normal_log_uniform(q: Normal, p: LogUniform) -> torch.Tensor:
    """``KL(N(loc, scale^2) || LogUniform)`` elementwise, through ``alpha = scale^2/loc^2``."""
    return log_uniform_kl(log_alpha(q.loc, q.scale))


def check_prior(prior: Distribution | None, name: str = "prior") -> Distribution:
    """``prior`` if it is a usable weight prior (``None`` gives the default)."""
    if prior is None:
        return default_prior()
    if not isinstance(prior, Distribution):
        raise TypeError(f"{name} must be a torch.distributions.Distribution, got {prior!r}")
    if prior.event_shape != torch.Size():
        raise ValueError(
            f"{name} must be a per-weight (scalar-event) distribution, "
            f"got event_shape {tuple(prior.event_shape)}"
        )
    try:
        support = prior.support
    except NotImplementedError:  # a custom distribution that does not say: taken on trust
        return prior
    if support is not None and not bool(support.check(torch.tensor([-1e3, 1e3])).all()):
        raise ValueError(f"{name} must be a distribution on the real line (a weight may take "
                         f"any value), got {prior!r} with support {support}")
    return prior


def has_closed_form_kl(prior: Distribution) -> bool:
    """Whether ``torch.distributions.kl_divergence(Normal, prior)`` is registered."""
    try:
        kl_divergence(Normal(torch.zeros(()), torch.ones(())), prior)
    except NotImplementedError:
        return False
    return True


def normal_kl(
    loc: torch.Tensor, scale: torch.Tensor, prior_loc: torch.Tensor, prior_scale: torch.Tensor
) -> torch.Tensor:
    """``KL(N(loc, scale^2) || N(prior_loc, prior_scale^2)) = log(prior_scale / scale) +
    (scale^2 + (loc - prior_loc)^2) / (2 prior_scale^2) - 1/2``, elementwise (broadcast);
    e.g. Bishop (2006), PRML, exercise 1.30."""
    return (torch.log(prior_scale) - torch.log(scale)
            + (scale.square() + (loc - prior_loc).square()) / (2 * prior_scale.square()) - 0.5)


class SoftplusNormalKL(torch.autograd.Function):
    """``sum_k sum_i KL(N(loc_ki, scale_ki^2) || N(prior_loc, prior_scale^2))`` over pairs
    ``(loc_k, scale_free_k)``, ``scale = softplus(scale_free)`` (:func:`normal_kl`), as one
    autograd node. With a scalar prior all pairs are one flat vector, and the forward pass
    also writes out the gradient, ``d/d loc = (loc - prior_loc) / prior_scale^2`` and ``d/d
    scale_free = (scale / prior_scale^2 - 1 / scale) sigmoid(scale_free)``, which the
    backward pass scales and splits into the tensors' shapes. Otherwise (a prior with
    shape, or one whose parameters are learned) and under ``create_graph=True`` the gradient
    is autograd's of :func:`softplus_normal_kl` (``graph_gradients.plain_gradients``), so
    second derivatives hold; not for ``torch.func`` transforms.

    ``apply(prior_loc, prior_scale, loc_1, scale_free_1, loc_2, scale_free_2, ...)``.
    """

    @staticmethod
    def forward(ctx: Any, prior_loc: torch.Tensor, prior_scale: torch.Tensor,
                *tensors: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(prior_loc, prior_scale, *tensors)
        ctx.gradient = None
        if prior_loc.ndim or prior_scale.ndim:
            return softplus_normal_kl(prior_loc, prior_scale, *tensors)
        ordered = [*tensors[::2], *tensors[1::2]]  # every loc, then every scale_free
        ctx.shapes = [t.shape for t in ordered]
        flat = torch.cat([t.reshape(-1) for t in ordered])
        n = flat.shape[0] // 2
        loc, free = flat[:n], flat[n:]
        scale = F.softplus(free)
        value = normal_kl(loc, scale, prior_loc, prior_scale).sum()
        if any(ctx.needs_input_grad[2:]) and not any(ctx.needs_input_grad[:2]):
            precision = prior_scale.square().reciprocal()
            gradient = torch.empty_like(flat)
            torch.mul(loc - prior_loc, precision, out=gradient[:n])
            torch.mul(scale * precision - scale.reciprocal(), torch.sigmoid(free),
                      out=gradient[n:])
            ctx.gradient = gradient
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        prior_loc, prior_scale, *tensors = ctx.saved_tensors
        if ctx.gradient is None or torch.is_grad_enabled():  # grad mode: create_graph
            return plain_gradients(softplus_normal_kl, (prior_loc, prior_scale, *tensors),
                                   ctx.needs_input_grad, grad,
                                   create_graph=torch.is_grad_enabled())
        parts = (ctx.gradient * grad).split([shape.numel() for shape in ctx.shapes])
        half = len(parts) // 2
        shaped = [part.view(shape) for part, shape in zip(parts, ctx.shapes, strict=True)]
        pairs = [g for pair in zip(shaped[:half], shaped[half:], strict=True) for g in pair]
        return (None, None, *pairs)


def softplus_normal_kl(prior_loc: torch.Tensor, prior_scale: torch.Tensor,
                       *tensors: torch.Tensor) -> torch.Tensor:
    """What :class:`SoftplusNormalKL` computes, in plain operations: the summed KL of every
    pair ``(loc, scale_free)`` in ``tensors`` to ``N(prior_loc, prior_scale^2)``."""
    return torch.stack([
        normal_kl(loc, F.softplus(free), prior_loc, prior_scale).sum()
        for loc, free in zip(tensors[::2], tensors[1::2], strict=True)
    ]).sum()


def normal_kl_of_layers(modules: list[Any]) -> tuple[list[torch.Tensor], list[Any]]:
    """The KL of every layer in ``modules`` whose posterior is a softplus-scaled mean-field
    Gaussian against a ``Normal`` prior (``weight_loc``/``weight_scale_free`` and
    ``bias_loc``/``bias_scale_free``, the base class's ``kl``), one :class:`SoftplusNormalKL`
    per prior object, dtype and device; and the modules left for their own ``kl``."""
    groups: dict[tuple[int, torch.dtype, torch.device], tuple[Normal, list[torch.Tensor]]] = {}
    rest = []
    for m in modules:
        prior = getattr(m, "prior", None)
        if type(prior) is not Normal or not getattr(m, "fusable_kl", False):
            rest.append(m)
            continue
        pairs = [m.weight_loc, m.weight_scale_free]
        if m.bias_loc is not None and m.bias_scale_free is not None:
            pairs += [m.bias_loc, m.bias_scale_free]
        key = (id(prior), m.weight_loc.dtype, m.weight_loc.device)
        groups.setdefault(key, (prior, []))[1].extend(pairs)
    terms = [SoftplusNormalKL.apply(prior.loc, prior.scale, *pairs)
             for prior, pairs in groups.values()]
    return terms, rest


def mean_field_kl(
    loc: torch.Tensor,
    scale: torch.Tensor,
    prior: Distribution,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``KL(N(loc, diag(scale^2)) || prod_i prior)``, a scalar.

    Closed form when registered, else the one-draw Monte Carlo estimate
    ``log q(w) - log p(w)`` with ``w = loc + scale * eps`` (unbiased, reparameterized).

    Args:
        loc, scale: tensors of the same shape (``scale`` is a standard deviation).
        prior: a scalar-event distribution broadcasting against ``loc``.
        generator: the source of ``eps`` for the Monte Carlo estimate.
    """
    if type(prior) is Normal:  # the default prior: the closed form without the dispatch
        return normal_kl(loc, scale, prior.loc, prior.scale).sum()
    q = Normal(loc, scale, validate_args=False)
    try:
        return kl_divergence(q, prior).sum()
    except NotImplementedError:
        pass
    eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
    w = loc + scale * eps
    return (q.log_prob(w) - prior.log_prob(w)).sum()
