"""What every noisy module shares: softplus scales, the KL method and a mean-only mode.

A weight ``w`` with posterior ``N(loc, scale^2)`` is stored as two free tensors,
``loc`` and ``scale_free`` with ``scale = softplus(scale_free)`` (never ``abs``); the
initial scale inverts exactly through :func:`noisybayes.math.families.inverse_softplus`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from noisybayes._checks import is_number
from noisybayes.math.families import inverse_softplus

__all__ = ["NoisyModule", "free_scale", "initial_scale", "posterior_mean"]


def initial_scale(init_scale: float, fan_in: int) -> float:
    """The initial posterior sd of one weight: ``init_scale / sqrt(fan_in)``.

    With standardised inputs a pre-activation then carries injected noise of sd about
    ``init_scale`` against a signal of sd about ``1/sqrt(3)`` (PyTorch's default
    initialisation): enough for the gradient to see the scales from the first step, small
    enough that training starts like a deterministic network.
    """
    if not (is_number(init_scale) and 0 < init_scale < math.inf):
        raise ValueError(f"init_scale must be a finite number > 0, got {init_scale!r}")
    return float(init_scale) / math.sqrt(max(fan_in, 1))


def free_scale(like: torch.Tensor, scale: float) -> nn.Parameter:
    """A parameter ``s`` shaped like ``like`` with ``softplus(s) = scale``."""
    value = torch.full_like(like, scale, dtype=like.dtype)
    return nn.Parameter(inverse_softplus(value).detach())


def softplus_scale(free: torch.Tensor) -> torch.Tensor:
    """``scale = softplus(free)``; elementwise, the shape of ``free``."""
    return F.softplus(free)


class NoisyModule(nn.Module):
    """Base class of modules whose parameters carry mean-field Gaussian noise.

    ``use_mean`` (default ``False``) makes ``forward`` use the posterior means; set it
    through :func:`posterior_mean`, which restores it.
    """

    use_mean: bool = False

    def kl(self, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``KL(q || p)`` of this module's own noisy parameters, a scalar."""
        raise NotImplementedError


@contextmanager
def posterior_mean(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every noisy module of ``model`` uses its posterior means.

    The previous settings are restored in ``finally``, also when the block raises.
    """
    noisy: list[Any] = [m for m in model.modules() if hasattr(m, "use_mean")]
    previous = [m.use_mean for m in noisy]
    try:
        for m in noisy:
            m.use_mean = True
        yield model
    finally:
        for m, was in zip(noisy, previous, strict=True):
            m.use_mean = was
