"""``nb.param``: the declaration of one uncertain parameter, its prior and its support."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch.distributions import Distribution, Transform, biject_to, constraints

__all__ = ["ParamSpec", "param"]


@dataclass(frozen=True)
class ParamSpec:
    """An uncertain parameter: ``prior`` over values of ``shape`` living in ``support``.

    ``prior=None`` is an improper flat prior on ``support`` (it adds nothing to the
    log-density). ``transform`` maps the unconstrained space onto ``support``.
    """

    prior: Distribution | None
    shape: torch.Size
    support: constraints.Constraint
    transform: Transform

    @property
    def unconstrained_shape(self) -> torch.Size:
        """Shape of the free (unconstrained) variable, e.g. ``n - 1`` for a simplex: the shape
        of the inverse image of a placeholder (``Transform.inverse_shape`` goes through
        ``torch.broadcast_shapes``, whose first call imports sympy, most of a second)."""
        with torch.no_grad():
            return self.transform.inv(torch.full(self.shape, 0.5)).shape

    def log_prior(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value)`` summed over the parameter's elements (0 for a flat prior)."""
        if self.prior is None:
            return value.new_zeros(())
        return self.prior.log_prob(value).sum()


def _prior_shape(prior: Distribution, shape: tuple[int, ...] | None) -> torch.Size:
    if shape is None:
        return prior.batch_shape + prior.event_shape
    shape = torch.Size(shape)
    n_event = len(prior.event_shape)
    if n_event and shape[len(shape) - n_event :] != prior.event_shape:
        raise ValueError(
            f"shape must end with the prior's event shape {tuple(prior.event_shape)}, "
            f"got {tuple(shape)}"
        )
    batch = shape[: len(shape) - n_event]
    try:  # numpy's rule: torch.broadcast_shapes imports sympy on first use (a second)
        compatible = np.broadcast_shapes(tuple(batch), tuple(prior.batch_shape)) == tuple(batch)
    except ValueError:
        compatible = False
    if not compatible:
        raise ValueError(
            f"shape must be compatible with the prior's batch shape {tuple(prior.batch_shape)}, "
            f"got {tuple(shape)}"
        )
    return shape


def _check_support_matches(prior: Distribution, support: constraints.Constraint) -> None:
    """Raise unless points of ``support`` lie in the prior's support."""
    prior_support = prior.support or constraints.real
    probe = biject_to(support)(torch.linspace(-5.0, 5.0, 11))
    inside = prior_support.check(probe.reshape(-1, *([1] * len(prior.batch_shape))))
    if not bool(inside.all()):
        raise ValueError(
            f"support must lie inside the prior's support {prior.support}, got {support}"
        )


def _expanded(prior: Distribution, batch_shape: torch.Size) -> Distribution:
    """``prior`` with ``batch_shape``, as a new object without sample checks.

    Values come from ``biject_to(support)``, so they lie in the support by construction; a
    sample check could only trip over a NaN, which the fit reports as a divergence. A user's
    distribution without ``expand`` is kept as it is (its ``log_prob`` broadcasts).
    """
    try:
        new = prior.expand(batch_shape)
    except NotImplementedError:
        return prior
    new._validate_args = False
    return new


def param(
    prior: Distribution | None,
    *,
    shape: tuple[int, ...] | None = None,
    support: constraints.Constraint | None = None,
) -> torch.Tensor:
    """Declare an uncertain parameter inside an ``nb.Model``'s ``__init__``.

    Args:
        prior: any ``torch.distributions.Distribution`` (a prior with batch shape ``(d,)``
            gives each element its own prior), or ``None`` for an improper flat prior.
        shape: the parameter's shape; by default the prior's batch + event shape
            (scalar for ``Normal(0., 10.)``). A scalar prior is broadcast over ``shape``.
        support: the constraint the values satisfy; by default the prior's support
            (``constraints.real`` for a flat prior).

    Returns:
        A :class:`ParamSpec`; assigned to a model attribute it becomes that attribute's
        current value, a tensor (hence the annotation, as for ``nn.Parameter``).
    """
    if prior is not None and not isinstance(prior, Distribution):
        raise TypeError(
            f"prior must be a torch.distributions.Distribution or None, got {type(prior).__name__}"
        )
    if support is not None and not isinstance(support, constraints.Constraint):
        raise TypeError(
            f"support must be a torch.distributions.constraints.Constraint, got {support!r}"
        )
    chosen: constraints.Constraint
    if prior is None:
        full_shape = torch.Size(() if shape is None else shape)
        chosen = constraints.real if support is None else support
    else:
        full_shape = _prior_shape(prior, shape)
        if support is None:
            chosen = prior.support or constraints.real
        else:
            _check_support_matches(prior, support)
            chosen = support
        prior = _expanded(prior, full_shape[: len(full_shape) - len(prior.event_shape)])
    if any(int(s) < 1 for s in full_shape):
        raise ValueError(f"shape must have positive sizes, got {tuple(full_shape)}")
    try:
        transform = biject_to(chosen)
    except NotImplementedError:
        raise ValueError(f"support must have a known bijection from R^n, got {chosen}") from None
    spec = ParamSpec(prior=prior, shape=full_shape, support=chosen, transform=transform)
    return cast(torch.Tensor, spec)
