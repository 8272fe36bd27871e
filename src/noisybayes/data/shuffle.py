"""A shuffle buffer: minibatches in a random order from a stream of chunks, in bounded memory.

Rows are collected until at least ``capacity`` are held, permuted by the generator and cut
into full batches; the rows left over (fewer than a batch) wait for the next buffer. A row
can thus move forward or back by about ``capacity`` rows, never further: the order of the
chunks themselves must be shuffled by the caller for rows far apart to meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

__all__ = ["buffered_shuffle"]


def buffered_shuffle(
    chunks: Iterable[torch.Tensor], batch_size: int, capacity: int,
    generator: torch.Generator, *, drop_last: bool,
) -> Iterator[torch.Tensor]:
    """Batches of ``batch_size`` rows (rows first) from ``chunks``, shuffled within a buffer
    of ``capacity`` rows; the last, smaller batch too unless ``drop_last``. At most
    ``capacity - 1`` rows plus one chunk are held at a time."""
    held: list[torch.Tensor] = []
    n_held = 0
    for chunk in chunks:
        held.append(chunk)
        n_held += chunk.shape[0]
        if n_held >= capacity:
            rows = _permuted(torch.cat(held), generator)
            full = n_held - n_held % batch_size
            yield from rows[:full].split(batch_size)
            held, n_held = [rows[full:].clone()], n_held - full  # a copy frees the buffer
    last = n_held - n_held % batch_size if drop_last else n_held
    if last:
        rows = _permuted(torch.cat(held), generator)
        yield from rows[:last].split(batch_size)


def _permuted(rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return rows[torch.randperm(rows.shape[0], generator=generator)]
