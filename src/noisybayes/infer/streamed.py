"""``nb.fit`` from a data source: whole-data statistics in bounded memory.

The fixed-draw solve evaluates the ELBO on every row at each of its steps, so from a source
the fit takes Adam steps on minibatches read from it. What the fit needs from the whole data
is read as follows:

* the Laplace start's mode search (L-BFGS) and its curvature, the model's output check: a
  uniform random subsample of about ``max_curvature_rows`` rows, read in one pass that keeps
  each row with probability ``n / N``. With ``n = 50,000`` (the default) the curvature, a
  sum of ``n`` per-row terms scaled by ``N / n``, has a relative error of order
  ``1 / sqrt(n) ≈ 0.5%``: ample for whitening, which only needs the right scales;
* the mode: polished by Newton steps whose gradients sum over all rows, one pass each; the
  log-likelihood gradient of the last one is the SVRG anchor of the minibatch steps;
* the Pareto k-hat: the log joint of each draw summed over all rows, one pass per batch of
  draws (as many draws as in memory: a budget of draws x rows, at least 200 draws).

Memory: the source's buffer, one chunk of :data:`~noisybayes.infer.data.PASS_ROWS` rows,
the subsample, and draws x a bounded chunk for k-hat; never the whole data, unless the
subsample is all of it (in one process, a source of at most ``max_curvature_rows`` rows,
fitted in memory).
"""

from __future__ import annotations

import inspect
import math

import torch

from noisybayes.engine.source import DataSource
from noisybayes.infer.data import PASS_ROWS
from noisybayes.infer.objective import Data
from noisybayes.model.model import Model

__all__ = ["check_source_inputs", "subsample"]


def subsample(source: DataSource, n_rows: int, generator: torch.Generator, *,
              capacity: int | None = None) -> Data:
    """One pass of ``source`` keeping each row with probability ``min(1, n_rows / N)``:
    a uniform random subset of about ``n_rows`` rows (every row when there are no more, at
    least the first row read).

    The kept rows are copied into buffers allocated before the pass (grown by doubling in
    the rare pass that keeps more): small tensors kept between the pass's large chunks
    fragment the heap, which grew by about 1 MiB per chunk (2 GiB over 10^8 rows).
    ``capacity``: the rows they first hold (by default 8 sds over ``n_rows``)."""
    keep = min(1.0, n_rows / source.n_rows)
    if capacity is None:
        capacity = min(source.n_rows, n_rows + 8 * math.isqrt(n_rows) + 16)
    buffers: list[torch.Tensor] = []
    first: tuple[torch.Tensor, ...] = ()
    filled = 0
    for xs, y in source.epoch(PASS_ROWS, generator, drop_last=False):
        chunk = (*xs, y)
        if not buffers:
            buffers = [t.new_empty((capacity, *t.shape[1:])) for t in chunk]
            first = tuple(t[:1].clone() for t in chunk)
        if keep < 1.0:
            mask = torch.rand(y.shape[0], generator=generator) < keep
            chunk = tuple(t[mask] for t in chunk)
        count = chunk[-1].shape[0]
        if filled + count > buffers[-1].shape[0]:  # a rare pass keeping more: grow
            size = max(2 * buffers[-1].shape[0], filled + count)
            grown = [b.new_empty((size, *b.shape[1:])) for b in buffers]
            for new, old in zip(grown, buffers, strict=True):
                new[:filled] = old[:filled]
            buffers = grown
        for buffer, part in zip(buffers, chunk, strict=True):
            buffer[filled : filled + count] = part
        filled += count
    if not buffers:
        raise ValueError("x must be a data source with rows, got an empty pass")
    kept = tuple(b[:filled] for b in buffers) if filled else first
    return kept[:-1], kept[-1]


def check_source_inputs(model: Model, rows: Data) -> None:
    """Refuse a source that yields another number of inputs than ``model.forward`` takes."""
    signature = inspect.signature(model.forward)
    try:
        signature.bind(*rows[0])
    except TypeError:
        names = ", ".join(signature.parameters)
        shapes = ", ".join(str(("B", *x.shape[1:])).replace("'", "") for x in rows[0])
        raise ValueError(
            f"x must yield the inputs of {type(model).__name__}.forward({names}), got a data "
            f"source yielding {len(rows[0])} "
            f"input(s) of shapes {shapes}; one list of columns makes one input, a tuple of "
            "lists one input per list"
        ) from None
