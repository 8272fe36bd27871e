"""Regression data for a fit: inputs ``x`` (a tensor or a tuple of tensors) and targets ``y``.

Integer tensors reach ``forward`` as they are (a group index ``g`` can index ``self.z[g]``);
every other input becomes the fit's float dtype, the widest of ``y``'s and the float inputs'.
What needs every row (the Newton polish of the mode, k-hat) reads them as :class:`Rows`:
passes over chunks, one chunk for tensors in memory, chunks read in turn from a data source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from noisybayes._checks import as_float_tensor
from noisybayes.engine.distributed import World
from noisybayes.engine.source import DataSource
from noisybayes.infer.objective import Data

__all__ = ["PASS_ROWS", "Rows", "as_data", "as_inputs"]

PASS_ROWS = 65_536  # rows per chunk of a pass over a data source


@dataclass(frozen=True)
class Rows:
    """Every row of a fit's data: ``passes()`` starts one pass, yielding ``(inputs, y)`` chunks
    that together hold each row once; ``n_elements`` is the number of elements of ``y``.
    In a data-parallel fit (``world`` of several processes) the passes hold this process's
    rows, a sum over them is summed over ``world``, and ``n_elements`` counts all processes'."""

    passes: Callable[[], Iterable[Data]]
    n_elements: int
    world: World = World()

    @classmethod
    def shard(cls, data: Data, world: World) -> Rows:
        """This process's rows in memory, as one chunk, of a fit over ``world``."""
        return cls(lambda: (data,), world.total(data[1].numel()), world)

    @classmethod
    def in_memory(cls, data: Data) -> Rows:
        """All rows as one chunk."""
        return cls(lambda: (data,), data[1].numel())

    @classmethod
    def streamed(cls, source: DataSource, elements_per_row: int, world: World | None = None
                 ) -> Rows:
        """The rows of ``source`` in chunks of :data:`PASS_ROWS` (memory: one chunk and the
        source's buffer); the sums a pass feeds do not depend on the order, so any fixed
        generator will do. Over ``world``, ``source`` is this process's shard."""
        world = world or World()
        return cls(
            lambda: source.epoch(PASS_ROWS, torch.Generator().manual_seed(0), drop_last=False),
            world.total(source.n_rows * elements_per_row), world,
        )


def _as_input(name: str, value: Any, dtype: torch.dtype | None) -> torch.Tensor:
    """An integer tensor unchanged (checked for rows), anything else a finite float tensor of
    ``dtype``."""
    integer = isinstance(value, torch.Tensor) and not (
        value.is_floating_point() or value.is_complex() or value.dtype == torch.bool
    )
    if integer:
        if value.ndim > 0 and value.shape[0] == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
        return value
    return as_float_tensor(name, value, dtype=dtype)


def as_inputs(
    x: Any, dtype: torch.dtype | None = None, name: str = "x"
) -> tuple[torch.Tensor, ...]:
    """``x`` as a tuple of tensors sharing their first dimension: integer tensors as they
    are, the others finite float tensors (of ``dtype`` when given)."""
    parts = x if isinstance(x, tuple) else (x,)
    if not parts:
        raise ValueError(f"{name} must hold at least one tensor, got an empty tuple")
    names = [name] if len(parts) == 1 else [f"{name}[{i}]" for i in range(len(parts))]
    tensors = tuple(_as_input(n, p, dtype) for n, p in zip(names, parts, strict=True))
    rows = {t.shape[0] if t.ndim else None for t in tensors}
    if None in rows or len(rows) != 1:
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(
            f"{name} must be tensors with the same number of rows, got shapes {shapes}"
        )
    return tensors


def as_data(x: Any, y: Any) -> Data:
    """Check and convert ``(x, y)``: ``y`` and the float inputs to one float dtype, the widest
    of theirs; integer input tensors unchanged."""
    y_tensor = as_float_tensor("y", y)
    if y_tensor.ndim == 0:
        raise ValueError("y must have one row per observation, got a scalar")
    xs = as_inputs(x)
    dtype = y_tensor.dtype
    for t in xs:
        if t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    xs = tuple(t.to(dtype) if t.is_floating_point() else t for t in xs)
    y_tensor = y_tensor.to(dtype)
    if xs[0].shape[0] != y_tensor.shape[0]:
        raise ValueError(
            f"x and y must have the same number of rows, got {xs[0].shape[0]} and {y_tensor.shape[0]}"
        )
    return xs, y_tensor
