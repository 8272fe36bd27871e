"""A data source over files read in chunks: memory bounded by a buffer, not by the rows.

The rows are a list of pieces, each a row range of one pyarrow fragment (a Parquet row
group or a CSV file) whose length is known before the first pass. One pass visits the
pieces in an order drawn from the generator, reads each in record batches, and cuts
minibatches from a buffer of at least ``buffer_rows`` rows shuffled by the same generator
(:func:`~noisybayes.data.shuffle.buffered_shuffle`): rows far apart in the files meet in one minibatch through the piece order, rows close
together are mixed by the buffer. A pass holds the buffer, one record batch and, for
Parquet, the row group being decoded; never the whole data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noisybayes._checks import check_positive_int
from noisybayes.data.shuffle import buffered_shuffle
from noisybayes.engine.source import Batch

__all__ = ["FileSource"]


@dataclass(frozen=True)
class Piece:
    """Rows ``start:stop`` of a pyarrow ``fragment`` read from the file ``path``."""

    fragment: Any
    path: str
    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


class FileSource:
    """Rows of files as ``(inputs, y)`` float minibatches (see the module's docstring).

    Built by :func:`noisybayes.data.Parquet` and :func:`noisybayes.data.CSV`.

    Args:
        pieces: the row ranges of this source, in storage order.
        schema: the pyarrow schema every fragment is read with.
        inputs: the columns of each input of ``forward``, stacked in that order into an
            ``(B, len(columns))`` tensor.
        y: the target column, yielded as a ``(B,)`` tensor.
        n_data: the rows of the whole data (over every shard).
        dtype: the float type of every tensor.
        buffer_rows: rows shuffled together (at least a batch's).
    """

    def __init__(self, pieces: list[Piece], schema: Any, inputs: tuple[tuple[str, ...], ...],
                 y: str, n_data: int, dtype: torch.dtype, buffer_rows: int) -> None:
        self.pieces, self.schema, self.inputs, self.y = pieces, schema, inputs, y
        self.dtype, self.buffer_rows = dtype, buffer_rows
        self._n_data = n_data
        self._columns = [name for names in inputs for name in names] + [y]

    @property
    def n_data(self) -> int:
        return self._n_data

    @property
    def n_rows(self) -> int:
        return sum(piece.n_rows for piece in self.pieces)

    def epoch(
        self, batch_size: int, generator: torch.Generator, *, drop_last: bool
    ) -> Iterator[Batch]:
        """One pass in an order drawn from ``generator``; a ``batch_size`` of at least
        ``n_rows`` gives one batch of every row, as :class:`TensorSource` does."""
        batch_size = min(check_positive_int("batch_size", batch_size), max(self.n_rows, 1))
        order = torch.randperm(len(self.pieces), generator=generator).tolist()
        chunks = (chunk for index in order for chunk in self._read(self.pieces[index]))
        capacity = max(self.buffer_rows, batch_size)
        for rows in buffered_shuffle(chunks, batch_size, capacity, generator,
                                     drop_last=drop_last):
            parts = rows[:, :-1].split([len(names) for names in self.inputs], dim=1)
            yield tuple(part.contiguous() for part in parts), rows[:, -1].contiguous()

    def shard(self, rank: int, world_size: int) -> FileSource:
        """Rows ``n_rows * rank // world_size`` up to ``n_rows * (rank + 1) // world_size`` in
        storage order (shards differ by one row at most; ``n_data`` unchanged)."""
        world_size = check_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if world_size > self.n_rows:
            raise ValueError(
                f"world_size must be at most the source's {self.n_rows} rows (every shard needs "
                f"a row), got {world_size}"
            )
        low, high = self.n_rows * rank // world_size, self.n_rows * (rank + 1) // world_size
        pieces, offset = [], 0
        for piece in self.pieces:
            start, stop = max(low - offset, 0), min(high - offset, piece.n_rows)
            if start < stop:
                pieces.append(Piece(piece.fragment, piece.path, piece.start + start,
                                    piece.start + stop))
            offset += piece.n_rows
        return FileSource(pieces, self.schema, self.inputs, self.y, self.n_data, self.dtype,
                          self.buffer_rows)

    def _read(self, piece: Piece) -> Iterator[torch.Tensor]:
        """The piece's rows as ``(rows, columns)`` tensors, inputs' columns first, y last."""
        offset = 0
        batches = piece.fragment.to_batches(
            schema=self.schema, columns=list(dict.fromkeys(self._columns)),  # each column once
            batch_size=self.buffer_rows)
        for batch in batches:
            start, stop = max(piece.start - offset, 0), min(piece.stop - offset, batch.num_rows)
            offset += batch.num_rows
            if start < stop:
                yield self._tensor(batch.slice(start, stop - start), piece.path)
            if offset >= piece.stop:
                return

    def _tensor(self, batch: Any, path: str) -> torch.Tensor:
        numpy_dtype = torch.empty(0, dtype=self.dtype).numpy().dtype
        array = np.empty((batch.num_rows, len(self._columns)), dtype=numpy_dtype)
        for j, name in enumerate(self._columns):
            array[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
            if not np.isfinite(array[:, j]).all():
                raise ValueError(
                    f"column {name!r} of {path!r} must hold finite numbers, got a missing or "
                    "non-finite value"
                )
        return torch.from_numpy(array)
