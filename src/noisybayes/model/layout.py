"""The flat unconstrained parameter vector of a model, and its log-density.

Inference works on one vector ``u`` of length ``size``: each parameter's free variable
``u_k`` is mapped to its support by ``value_k = T_k(u_k)`` (``biject_to``), and

    log p(u) = sum_k [ log p_k(T_k(u_k)) + log |det J_{T_k}(u_k)| ].

A conditional prior ``p_k(value_k | values of others)`` is evaluated after the parameters it
reads; a non-centred one maps ``z_k = u_k`` to ``value_k = loc + scale * z_k``, with
``log |det J| = sum log scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
from torch.distributions import Transform
from torch.distributions.transforms import IndependentTransform
from torch.func import vmap

from noisybayes.model.conditional import Declared, noncentred_value, prior_at, resolve
from noisybayes.model.model import Model
from noisybayes.model.param import ParamSpec

__all__ = ["ParamLayout"]


@dataclass(frozen=True)
class _Block:
    """Where a parameter sits in ``u`` and how its value is made: ``transform(u_k)`` when
    ``centred``, ``loc + scale * u_k`` from its conditional prior otherwise."""

    name: str
    spec: ParamSpec
    start: int
    stop: int
    transform: Transform
    centred: bool
    declared: Declared

    @property
    def conditional(self) -> bool:
        return self.spec.conditional is not None


class ParamLayout:
    """Where each uncertain parameter of ``model`` sits in the flat vector ``u``."""

    def __init__(self, model: Model) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be an nb.Model, got {type(model).__name__}")
        declared: list[Declared] = []
        for prefix, module in model.named_modules():
            if isinstance(module, Model):
                dotted = f"{prefix}." if prefix else ""
                declared.extend(
                    Declared(dotted + name, spec, module, dotted)
                    for name, spec in module.param_specs.items()
                )
        if not declared:
            raise ValueError(
                f"model must declare at least one nb.param, got none in {type(model).__name__}"
            )
        resolved = {r.declared.name: r for r in resolve(declared)}
        blocks: list[_Block] = []
        start = 0
        for item in declared:
            r = resolved[item.name]
            size = r.spec.unconstrained_shape.numel()
            blocks.append(_Block(item.name, r.spec, start, start + size, r.transform,
                                 r.centred, item))
            start += size
        self.blocks: tuple[_Block, ...] = tuple(blocks)
        self._by_name = {b.name: b for b in blocks}
        # evaluation order: a conditional prior after the parameters it reads
        self._order = tuple(self._by_name[name] for name in resolved)
        self.size = start

    @property
    def names(self) -> list[str]:
        """Parameter names in order (submodules' parameters as ``"sub.name"``)."""
        return [b.name for b in self.blocks]

    @property
    def specs(self) -> dict[str, ParamSpec]:
        return {b.name: b.spec for b in self.blocks}

    def unflatten(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``u`` of shape ``(..., size)`` into free variables of each parameter."""
        batch = u.shape[:-1]
        return {
            b.name: u[..., b.start : b.stop].reshape(batch + b.spec.unconstrained_shape)
            for b in self.blocks
        }

    @property
    def has_conditional(self) -> bool:
        """Whether some prior is built from other parameters."""
        return any(b.conditional for b in self.blocks)

    def constrain(self, u: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Map one vector ``u`` (shape ``(size,)``) to parameter values and ``log|det J|``."""
        free = self.unflatten(u)
        values: dict[str, torch.Tensor] = {}
        log_det = u.new_zeros(())
        for b in self._order:
            if b.centred:
                value = b.transform(free[b.name])
                jacobian = b.transform.log_abs_det_jacobian(free[b.name], value)
            else:
                prior = prior_at(b.declared, values.__getitem__)
                value = noncentred_value(prior, free[b.name])
                jacobian = prior.scale.log().expand(b.spec.shape)  # type: ignore[attr-defined]
            values[b.name] = value
            log_det = log_det + jacobian.sum()
        return {b.name: values[b.name] for b in self.blocks}, log_det

    def values(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Constrained values for ``u`` of shape ``(..., size)``; conditional priors are
        evaluated one draw at a time, under ``vmap``."""
        if not self.has_conditional:
            free = self.unflatten(u)
            return {b.name: b.transform(free[b.name]) for b in self.blocks}
        if u.dim() == 1:
            return self.constrain(u)[0]
        batch = u.shape[:-1]
        flat = vmap(lambda v: self.constrain(v)[0])(u.reshape(-1, self.size))
        return {name: value.reshape(batch + value.shape[1:]) for name, value in flat.items()}

    def unconstrain(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The inverse of :meth:`values` for one set of values: returns ``u`` (``(size,)``)."""
        given = {b.name: torch.as_tensor(values[b.name]).reshape(b.spec.shape) for b in self.blocks}
        parts = []
        for b in self.blocks:
            if b.centred:
                free = b.transform.inv(given[b.name])
            else:
                prior = prior_at(b.declared, given.__getitem__)
                free = (given[b.name] - prior.loc) / prior.scale  # type: ignore[attr-defined]
            parts.append(free.reshape(-1))
        return torch.cat(parts)

    def log_prior(self, values: dict[str, torch.Tensor], skip: frozenset[str] = frozenset()):
        """``sum_k log p_k(value_k | values)`` over the parameters not in ``skip``."""
        total = next(iter(values.values())).new_zeros(())
        for b in self.blocks:
            if b.name in skip:
                continue
            if b.conditional:
                prior = prior_at(b.declared, values.__getitem__)
                total = total + prior.log_prob(values[b.name]).sum()
            else:
                total = total + b.spec.log_prior(values[b.name])
        return total

    def is_identity(self, name: str) -> bool:
        """Whether parameter ``name``'s value is its free variable (an unconstrained,
        centred parameter)."""
        block = self._by_name[name]
        if not block.centred:
            return False
        transform = block.transform
        while isinstance(transform, IndependentTransform):  # e.g. biject_to(real_vector)
            transform = transform.base_transform
        parts = getattr(transform, "parts", None)
        return parts is not None and len(parts) == 0

    def labels(self) -> list[str]:
        """One label per scalar element of the constrained values: ``beta[0]``, ``sigma``."""
        out = []
        for b in self.blocks:
            shape = tuple(b.spec.shape)
            if not shape:
                out.append(b.name)
                continue
            for index in product(*(range(s) for s in shape)):
                out.append(f"{b.name}[{','.join(map(str, index))}]")
        return out
