"""Data sources: where the training loop's minibatches come from.

A source knows ``n_data``, the rows of the whole data set (over every shard), which scales
a minibatch's log-likelihood by ``n_data / B``; it yields one pass over its own rows in an
order drawn from a ``torch.Generator`` (so a pass is reproducible from the generator's
state), and it can be restricted to the rows of one of several processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

__all__ = ["Batch", "DataSource", "TensorSource", "check_whole"]

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]
"""``(inputs, y)``: ``forward``'s positional arguments and the targets, rows first."""


@runtime_checkable
class DataSource(Protocol):
    """What the training loop reads: minibatches and the size of the whole data."""

    @property
    def n_data(self) -> int:
        """Rows in the whole data set (all shards together)."""
        ...

    @property
    def n_rows(self) -> int:
        """Rows this source yields in one pass (its shard)."""
        ...

    def epoch(
        self, batch_size: int, generator: torch.Generator, *, drop_last: bool
    ) -> Iterator[Batch]:
        """One pass over the rows in an order drawn from ``generator``; with ``drop_last``
        only full batches of ``batch_size`` rows."""
        ...

    def shard(self, rank: int, world_size: int) -> DataSource:
        """The rows of process ``rank`` of ``world_size`` (``n_data`` unchanged)."""
        ...


class TensorSource:
    """In-memory tensors, sliced by index: a fresh random permutation each pass (no per-row
    collation). All rows in one batch come back as they are, without a copy."""

    def __init__(self, inputs: tuple[torch.Tensor, ...], y: torch.Tensor,
                 n_data: int | None = None) -> None:
        self.inputs, self.y = inputs, y
        self._n_data = y.shape[0] if n_data is None else n_data

    @property
    def n_data(self) -> int:
        return self._n_data

    @property
    def n_rows(self) -> int:
        return self.y.shape[0]

    def epoch(
        self, batch_size: int, generator: torch.Generator, *, drop_last: bool
    ) -> Iterator[Batch]:
        n = self.n_rows
        if batch_size >= n:
            yield self.inputs, self.y
            return
        order = torch.randperm(n, generator=generator).to(self.y.device)
        stop = n - batch_size + 1 if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield tuple(x[index] for x in self.inputs), self.y[index]

    def shard(self, rank: int, world_size: int) -> TensorSource:
        """Rows ``rank, rank + world_size, ...`` (strided, so shards differ by one row at most)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        rows = slice(rank, None, world_size)
        return TensorSource(tuple(x[rows] for x in self.inputs), self.y[rows], self.n_data)


def check_whole(name: str, source: DataSource) -> DataSource:
    """``source`` if it yields every row of its data; a shard (``n_rows < n_data``) fitted
    alone would be weighed as the whole data, so it is refused naming ``name``."""
    if source.n_rows != source.n_data:
        raise ValueError(
            f"{name} must be a whole data source, got a shard of {source.n_rows} of its "
            f"{source.n_data} rows (fitted alone, a shard would be weighed as the whole data; "
            "under torch.distributed pass the whole source: each process reads its shard)")
    return source
