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
the subsample, and draws x a bounded chunk for k-hat; never the whole data.
"""

from __future__ import annotations

import inspect

import torch

from noisybayes.engine.source import DataSource
from noisybayes.infer.data import PASS_ROWS
from noisybayes.infer.objective import Data
from noisybayes.model.model import Model

__all__ = ["check_source_inputs", "subsample"]


def subsample(source: DataSource, n_rows: int, generator: torch.Generator) -> Data:
    """One pass of ``source`` keeping each row with probability ``min(1, n_rows / N)``:
    a uniform random subset of about ``n_rows`` rows (every row when there are no more, at
    least the first row read)."""
    keep = min(1.0, n_rows / source.n_rows)
    parts: list[Data] = []
    first: Data | None = None
    for xs, y in source.epoch(PASS_ROWS, generator, drop_last=False):
        first = first or (tuple(x[:1].clone() for x in xs), y[:1].clone())
        if keep < 1.0:
            mask = torch.rand(y.shape[0], generator=generator) < keep
            xs, y = tuple(x[mask] for x in xs), y[mask]
        if y.shape[0]:
            parts.append((xs, y))
    if not parts:
        if first is None:
            raise ValueError("x must be a data source with rows, got an empty pass")
        parts = [first]
    inputs = tuple(torch.cat(columns) for columns in zip(*(p[0] for p in parts), strict=True))
    return inputs, torch.cat([p[1] for p in parts])


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
