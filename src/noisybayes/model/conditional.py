"""Priors built from other parameters, ``p(theta | phi)``, and their dependency order.

A conditional prior is a callable of the model, read through :class:`ParamReader` so that
``m.mu`` is the current value of ``mu``. A location-scale prior ``theta ~ D(loc(phi),
scale(phi))`` may be fitted non-centred, ``theta = loc + scale * z``, where

    log p(z | phi) = log p(theta | phi) + sum log scale

is the density of ``z ~ D(0, 1)``, free of ``phi`` for a location-scale family
(Papaspiliopoulos, Roberts & Skold 2007).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.distributions import (
    Cauchy,
    Distribution,
    Gumbel,
    Laplace,
    Normal,
    StudentT,
    Transform,
    constraints,
)

from noisybayes.model.model import Model
from noisybayes.model.param import ParamSpec, _support_inside, _transform

__all__ = ["Declared", "ParamReader", "Resolved", "noncentred_value", "resolve"]

LOCATION_SCALE = (Normal, StudentT, Cauchy, Laplace, Gumbel)


class _PriorError(ValueError):
    """A conditional prior that cannot be resolved; passed through the callables that read
    it unchanged, so the message names the parameter at fault."""


class ParamReader:
    """What a conditional prior sees as the model: ``m.name`` is ``lookup("prefix.name")``
    for a declared parameter, a reader for an ``nb.Model`` submodule, and the module's own
    attribute otherwise (sizes, buffers of data)."""

    __slots__ = ("_lookup", "_module", "_prefix")

    def __init__(self, module: Model, prefix: str, lookup: Callable[[str], torch.Tensor]) -> None:
        self._module = module
        self._prefix = prefix
        self._lookup = lookup

    def __getattr__(self, name: str) -> object:
        if name in self._module.param_specs:
            return self._lookup(self._prefix + name)
        attribute = getattr(self._module, name)
        if isinstance(attribute, Model):
            return ParamReader(attribute, f"{self._prefix}{name}.", self._lookup)
        return attribute


@dataclass(frozen=True)
class Declared:
    """A parameter as declared: its full name, spec, and the module that owns it."""

    name: str
    spec: ParamSpec
    owner: Model
    prefix: str


@dataclass(frozen=True)
class Resolved:
    """A parameter ready for the layout: ``spec`` with its support and transform known, and
    ``centred`` (``False``: fitted as ``loc + scale * z``)."""

    declared: Declared
    spec: ParamSpec
    transform: Transform
    centred: bool


def prior_at(item: Declared, lookup: Callable[[str], torch.Tensor]) -> Distribution:
    """The conditional prior of ``item`` with the other parameters read through ``lookup``."""
    build = item.spec.conditional
    if build is None:
        raise ValueError(f"parameter {item.name!r} has no conditional prior")
    return build(ParamReader(item.owner, item.prefix, lookup))


def noncentred_value(prior: Distribution, z: torch.Tensor) -> torch.Tensor:
    """``theta = loc + scale * z``."""
    return prior.loc + prior.scale * z  # type: ignore[attr-defined]


def _evaluate(item: Declared, lookup: Callable[[str], torch.Tensor]) -> Distribution:
    """``prior_at``, with the user's exceptions raised again naming the parameter."""
    try:
        prior = prior_at(item, lookup)
    except _PriorError:
        raise
    except Exception as error:
        raise _PriorError(
            f"the prior of {item.name!r} raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(prior, Distribution):
        raise TypeError(
            f"the prior of {item.name!r} must return a torch.distributions.Distribution, got "
            f"{type(prior).__name__}"
        )
    return prior


def _check_shape(name: str, prior: Distribution, shape: torch.Size) -> None:
    """The prior's batch + event shape must broadcast to the declared ``shape``."""
    own = tuple(prior.batch_shape + prior.event_shape)
    n_event = len(prior.event_shape)
    fits = len(own) <= len(shape) and tuple(shape[len(shape) - n_event :]) == tuple(
        prior.event_shape
    )
    try:  # numpy's rule: torch.broadcast_shapes imports sympy on first use
        fits = fits and np.broadcast_shapes(own, tuple(shape)) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise _PriorError(
            f"the prior of {name!r} returned a {type(prior).__name__} of shape {own}, which "
            f"does not broadcast to the declared shape {tuple(shape)}: pass shape= to match"
        )


def _support(name: str, spec: ParamSpec, prior: Distribution) -> constraints.Constraint:
    """``support=`` if given (checked to lie inside the prior's), else the prior's support."""
    own = prior.support or constraints.real
    if spec.support is None:
        return own
    if not _support_inside(prior, spec.support):
        raise _PriorError(
            f"support of {name!r} must lie inside its prior's support {own}, got {spec.support}"
        )
    return spec.support


def _centred(name: str, spec: ParamSpec, prior: Distribution, support: object) -> bool:
    """The form to fit: ``spec.centred`` if given, else non-centred where it is possible."""
    possible = isinstance(prior, LOCATION_SCALE) and support is constraints.real
    if spec.centred is False and not possible:
        kinds = ", ".join(k.__name__ for k in LOCATION_SCALE)
        raise _PriorError(
            f"centred=False for {name!r} needs a location-scale prior ({kinds}) on the real "
            f"line, got {type(prior).__name__} on {support}"
        )
    return not possible if spec.centred is None else spec.centred


def _resolve_one(item: Declared, lookup: Callable[[str], torch.Tensor]) -> Resolved:
    spec = item.spec
    if spec.conditional is None and spec.transform is not None:  # nb.param sets it
        return Resolved(item, spec, spec.transform, True)
    prior = _evaluate(item, lookup)
    _check_shape(item.name, prior, spec.shape)
    support = _support(item.name, spec, prior)
    transform = _transform(support)
    centred = _centred(item.name, spec, prior, support)
    resolved = replace(spec, support=support, transform=transform)
    return Resolved(item, resolved, transform, centred)


def _start_value(resolved: Resolved, lookup: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """The value at ``u = 0``."""
    spec = resolved.spec
    if resolved.centred:
        return resolved.transform(torch.zeros(spec.unconstrained_shape))
    return noncentred_value(prior_at(resolved.declared, lookup), torch.zeros(spec.shape))


def resolve(declared: list[Declared]) -> list[Resolved]:
    """Each parameter resolved, in an order where a prior comes after what it reads.

    Conditional priors are evaluated at the other parameters' values at ``u = 0``, which
    gives each its support and checks its shape; a parameter is resolved when a prior
    reads it, so the order follows the reads.
    """
    by_name = {item.name: item for item in declared}
    order: list[Resolved] = []
    start: dict[str, torch.Tensor] = {}
    visiting: list[str] = []

    def visit(name: str) -> torch.Tensor:
        if name in start:
            return start[name]
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise _PriorError(f"the priors of these parameters read each other in a cycle: {cycle}")
        visiting.append(name)
        resolved = _resolve_one(by_name[name], visit)
        start[name] = _start_value(resolved, visit)
        visiting.pop()
        order.append(resolved)
        return start[name]

    for item in declared:
        visit(item.name)
    return order
