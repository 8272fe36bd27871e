"""``nb.param``: the declaration of one uncertain parameter, its prior and its support."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np
import torch
from torch.distributions import Distribution, Transform, biject_to, constraints

__all__ = ["ConditionalPrior", "ParamSpec", "param"]

ConditionalPrior = Callable[[Any], Distribution]
"""A prior built from other parameters: called with the model, returns a Distribution."""


@dataclass(frozen=True)
class ParamSpec:
    """An uncertain parameter: ``prior`` over values of ``shape`` living in ``support``.

    ``prior=None`` and ``conditional=None`` is an improper flat prior on ``support`` (it adds
    nothing to the log-density). ``conditional`` is a prior ``p(value | other parameters)``
    that :class:`~noisybayes.model.layout.ParamLayout` evaluates at the other parameters'
    values; ``support`` and ``transform`` are ``None`` only for such a prior declared without
    ``support=``, until the layout reads them from the distribution it returns. ``transform``
    maps the unconstrained space onto ``support``; ``centred`` is the requested form of a
    conditional prior (``None``: the layout's default).
    """

    prior: Distribution | None
    shape: torch.Size
    support: constraints.Constraint | None
    transform: Transform | None
    conditional: ConditionalPrior | None = None
    centred: bool | None = None

    @cached_property
    def unconstrained_shape(self) -> torch.Size:
        """Shape of the free (unconstrained) variable, e.g. ``n - 1`` for a simplex: the shape
        of the inverse image of a placeholder (``Transform.inverse_shape`` goes through
        ``torch.broadcast_shapes``, whose first call imports sympy, most of a second),
        worked out once per parameter: ``ParamLayout.unflatten`` reads it at every
        evaluation."""
        if self.transform is None:
            raise ValueError("the support of a conditional prior is known once ParamLayout "
                             "has evaluated it; pass support= to know it at declaration")
        with torch.no_grad():
            return self.transform.inv(torch.full(self.shape, 0.5)).shape

    def log_prior(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value)`` summed over the parameter's elements (0 for a flat prior)."""
        if self.conditional is not None:
            raise ValueError("a conditional prior needs the other parameters' values: "
                             "evaluate it with ParamLayout.log_prior")
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


def _support_inside(prior: Distribution, support: constraints.Constraint) -> bool:
    """Whether points spread over ``support`` lie in the prior's support."""
    prior_support = prior.support or constraints.real
    probe = biject_to(support)(torch.linspace(-5.0, 5.0, 11))
    return bool(prior_support.check(probe.reshape(-1, *([1] * len(prior.batch_shape)))).all())


def _check_support_matches(prior: Distribution, support: constraints.Constraint) -> None:
    """Raise unless points of ``support`` lie in the prior's support."""
    if not _support_inside(prior, support):
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


def _conditional_spec(
    prior: ConditionalPrior,
    shape: tuple[int, ...] | None,
    support: constraints.Constraint | None,
    centred: bool | None,
) -> ParamSpec:
    """The declaration of a parameter whose prior is built from other parameters."""
    if centred is not None and not isinstance(centred, bool):
        raise TypeError(f"centred must be True, False or None, got {centred!r}")
    full_shape = torch.Size(() if shape is None else shape)
    if any(int(s) < 1 for s in full_shape):
        raise ValueError(f"shape must have positive sizes, got {tuple(full_shape)}")
    transform = None if support is None else _transform(support)
    return ParamSpec(prior=None, shape=full_shape, support=support, transform=transform,
                     conditional=prior, centred=centred)


def _transform(support: constraints.Constraint) -> Transform:
    try:
        return biject_to(support)
    except NotImplementedError:
        raise ValueError(f"support must have a known bijection from R^n, got {support}") from None


def param(
    prior: Distribution | ConditionalPrior | None,
    *,
    shape: tuple[int, ...] | None = None,
    support: constraints.Constraint | None = None,
    centred: bool | None = None,
) -> torch.Tensor:
    """Declare an uncertain parameter inside an ``nb.Model``'s ``__init__``.

    A prior may depend on other parameters, ``p(theta | mu, tau)``: pass a callable taking
    the model and returning the distribution, ``nb.param(lambda m: Normal(m.mu, m.tau),
    shape=(J,))``; there ``m.name`` is the current value of parameter ``name`` (of ``m`` or
    of a submodule, ``m.sub.name``) and any other attribute is the model's own. It is
    evaluated one draw at a time (so write it for single values), in an order the layout works
    out from what each prior reads; a cycle is an error. Its support is ``support`` if
    given, else the support of the distribution it returns with every parameter it reads
    at its starting value (the image of 0 in the unconstrained space).

    ``centred`` chooses how such a prior is fitted. A location-scale prior on the real line
    (``Normal``, ``StudentT``, ``Cauchy``, ``Laplace``, ``Gumbel``) can be fitted non-centred,
    ``theta = loc + scale * z`` with ``z`` the standardised variable, which is the default
    (``centred=None``): the centred density ``p(theta | mu, tau)`` grows without bound as
    ``tau -> 0`` with ``theta -> mu`` (the funnel), so where the data leave small ``tau``
    plausible the joint has no usable mode and a Gaussian approximation of it cannot be
    trusted, while the density of ``z`` does not depend on ``mu`` or ``tau``. Pass
    ``centred=True`` when each group's data pin its ``theta`` down (many rows per group),
    where the centred form is the more nearly Gaussian one. Draws and summaries report
    ``theta`` in either form; any other prior is fitted centred.

    Args:
        prior: any ``torch.distributions.Distribution`` (a prior with batch shape ``(d,)``
            gives each element its own prior), ``None`` for an improper flat prior, or a
            callable ``model -> Distribution`` for a prior built from other parameters.
        shape: the parameter's shape; by default the prior's batch + event shape
            (scalar for ``Normal(0., 10.)``; scalar for a callable prior). A prior of smaller
            shape is broadcast over ``shape``.
        support: the constraint the values satisfy; by default the prior's support
            (``constraints.real`` for a flat prior).
        centred: for a callable prior only: ``True`` fits it as written, ``False``
            non-centred (a location-scale prior on the real line only), ``None`` (default)
            non-centred where possible.

    Returns:
        A :class:`ParamSpec`; assigned to a model attribute it becomes that attribute's
        current value, a tensor (hence the annotation, as for ``nn.Parameter``).
    """
    if support is not None and not isinstance(support, constraints.Constraint):
        raise TypeError(
            f"support must be a torch.distributions.constraints.Constraint, got {support!r}"
        )
    if callable(prior) and not isinstance(prior, Distribution):
        return cast(torch.Tensor, _conditional_spec(prior, shape, support, centred))
    if prior is not None and not isinstance(prior, Distribution):
        raise TypeError(
            f"prior must be a torch.distributions.Distribution or None, got "
            f"{type(prior).__name__} (a prior built from other parameters is a callable "
            "taking the model)"
        )
    if centred is not None:
        raise ValueError(
            f"centred applies to a prior built from other parameters (a callable), got "
            f"centred={centred!r} with a fixed prior"
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
    spec = ParamSpec(prior=prior, shape=full_shape, support=chosen, transform=_transform(chosen))
    return cast(torch.Tensor, spec)
