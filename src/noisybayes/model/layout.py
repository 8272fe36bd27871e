"""The flat unconstrained parameter vector of a model, and its log-density.

Inference works on one vector ``u`` of length ``size``: each parameter's free variable
``u_k`` is mapped to its support by ``value_k = T_k(u_k)`` (``biject_to``), and

    log p(u) = sum_k [ log p_k(T_k(u_k)) + log |det J_{T_k}(u_k)| ].
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
from torch.distributions.transforms import IndependentTransform

from noisybayes.model.model import Model
from noisybayes.model.param import ParamSpec

__all__ = ["ParamLayout"]


@dataclass(frozen=True)
class _Block:
    name: str
    spec: ParamSpec
    start: int
    stop: int


class ParamLayout:
    """Where each uncertain parameter of ``model`` sits in the flat vector ``u``."""

    def __init__(self, model: Model) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be an nb.Model, got {type(model).__name__}")
        blocks: list[_Block] = []
        start = 0
        for prefix, module in model.named_modules():
            if not isinstance(module, Model):
                continue
            for name, spec in module.param_specs.items():
                size = spec.unconstrained_shape.numel()
                full = f"{prefix}.{name}" if prefix else name
                blocks.append(_Block(full, spec, start, start + size))
                start += size
        if not blocks:
            raise ValueError(
                f"model must declare at least one nb.param, got none in {type(model).__name__}"
            )
        self.blocks: tuple[_Block, ...] = tuple(blocks)
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

    def constrain(self, u: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Map one vector ``u`` (shape ``(size,)``) to parameter values and ``log|det J|``."""
        values: dict[str, torch.Tensor] = {}
        log_det = u.new_zeros(())
        for name, free in self.unflatten(u).items():
            transform = self.specs[name].transform
            value = transform(free)
            values[name] = value
            log_det = log_det + transform.log_abs_det_jacobian(free, value).sum()
        return values, log_det

    def values(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Constrained values for ``u`` of shape ``(..., size)``."""
        free = self.unflatten(u)
        return {name: self.specs[name].transform(f) for name, f in free.items()}

    def unconstrain(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The inverse of :meth:`values` for one set of values: returns ``u`` (``(size,)``)."""
        parts = []
        for b in self.blocks:
            value = torch.as_tensor(values[b.name]).reshape(b.spec.shape)
            parts.append(b.spec.transform.inv(value).reshape(-1))
        return torch.cat(parts)

    def log_prior(self, values: dict[str, torch.Tensor], skip: frozenset[str] = frozenset()):
        """``sum_k log p_k(value_k)`` over the parameters not in ``skip``."""
        total = next(iter(values.values())).new_zeros(())
        for name, value in values.items():
            if name not in skip:
                total = total + self.specs[name].log_prior(value)
        return total

    def is_identity(self, name: str) -> bool:
        """Whether parameter ``name`` is unconstrained (its transform is the identity)."""
        transform = self.specs[name].transform
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
