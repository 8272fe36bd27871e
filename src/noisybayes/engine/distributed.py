"""Data-parallel fits: each process holds its own rows, whole-data sums run over processes.

Under ``torch.distributed`` (``torchrun``, or a process group started by hand) the rows a
process is given are its part of the data, ``N = sum_r N_r`` over the ``W`` processes. A
sum over all rows is the all-reduced sum of each process's sum over its rows,
``S = sum_r S_r``. A term that every process computes whole (the prior, the entropy)
enters each process's share with weight ``1 / W``, so the all-reduced sum counts it once:

    f = sum_r [ sum_{i in rows_r} l_i + f_0 / W ]

Every process then holds the same numbers and takes the same decisions. Without a process
group, or with a group of one process, every operation here is the identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World"]


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes of a data-parallel fit."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        """The default process group of ``torch.distributed``, or one process without one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def parallel(self) -> bool:
        """Whether more than one process shares the work."""
        return self.size > 1

    @property
    def share(self) -> float:
        """``1 / W``: the weight of a term every process computes whole in its share."""
        return 1.0 / self.size

    def sum(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``sum_r t_r`` for each tensor, in one all-reduce, summed in float64 and returned
        in each tensor's dtype (the inputs themselves, unchanged, for one process)."""
        if not self.parallel:
            return tensors
        device = _device()
        flat = torch.cat([t.detach().reshape(-1).to(device, torch.float64) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, start = [], 0
        for t in tensors:
            part = flat[start : start + t.numel()].reshape(t.shape)
            out.append(part.to(t.device, t.dtype))
            start += t.numel()
        return tuple(out)

    def total(self, count: int) -> int:
        """``sum_r count_r`` for an integer (rows, elements)."""
        return self._reduced(count, "SUM")

    def check_own_rows(self, name: str, *tensors: torch.Tensor) -> None:
        """Refuse, on every process, rows that are the same on all of them: each process
        passes its own share (``N`` is their sum), so the same rows everywhere would count
        every row ``W`` times and narrow the posterior by ``sqrt(W)``. Compared by a
        fingerprint (each tensor's row count, sum and sum of squares, in float64)."""
        if not self.parallel:
            return
        fingerprint = torch.tensor(
            [v for t in tensors for v in (t.shape[0], float(t.double().sum()),
                                          float(t.double().square().sum()))],
            dtype=torch.float64, device=_device())
        low, high = fingerprint.clone(), fingerprint.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if bool(torch.equal(low, high)):
            raise ValueError(
                f"{name} must be this process's own share of the rows in a data-parallel run "
                f"(torch.distributed is initialised with {self.size} processes, and N is the "
                f"sum of their rows), got the same rows on every process: each row would "
                f"count {self.size} times. Pass each process its part of the data (e.g. "
                "rows[rank::world_size]), or fit outside the process group")

    def smallest(self, count: int) -> int:
        """``min_r count_r`` for an integer."""
        return -self.largest(-count)

    def largest(self, count: int) -> int:
        """``max_r count_r`` for an integer."""
        return self._reduced(count, "MAX")

    def _reduced(self, count: int, op: str) -> int:
        """``count`` all-reduced over the processes by ``dist.ReduceOp``'s ``op``."""
        if not self.parallel:
            return count
        value = torch.tensor([count], dtype=torch.int64, device=_device())
        dist.all_reduce(value, op=getattr(dist.ReduceOp, op))
        return int(value)

    def shard_scale(self, n_rows: int, n_data: int) -> tuple[int, float]:
        """``(W N_r, N_r / N)`` for this process's ``N_r = n_rows`` of ``N = n_data`` rows.

        A per-datum loss ``l_B / B + f_0 / n`` (a batch's mean data term, a whole term
        ``f_0``) evaluated with ``n = W N_r`` and weighted by ``N_r / N`` is
        ``(N_r / N) l_B / B + f_0 / (W N)``: its sum over processes estimates
        ``(sum_i l_i + f_0) / N`` without bias, ``f_0`` counted once. ``(N, 1.0)`` alone.
        """
        if not self.parallel:
            return n_data, 1.0
        return self.size * n_rows, n_rows / n_data

    def gathered(self, value: object) -> list[object]:
        """Every process's ``value`` (any picklable object), in rank order: ``[value]`` for
        one process. For small things that are no tensor of one shape (a process's labels)."""
        if not self.parallel:
            return [value]
        values: list[object] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """Set ``tensors`` in place to process 0's values on every process (a network's
        initial weights)."""
        if self.parallel:
            with torch.no_grad():
                for t in tensors:
                    dist.broadcast(t, src=0)

    def same_generator(self, generator: torch.Generator) -> torch.Generator:
        """``generator`` set to process 0's state on every process (so the draws of ``q``
        are the same everywhere); returned for chaining."""
        if self.parallel:
            state = generator.get_state().to(_device())
            dist.broadcast(state, src=0)
            generator.set_state(state.cpu())
        return generator

    @contextmanager
    def together(self) -> Iterator[None]:
        """A block that may fail on some processes only (checking their inputs): if it
        raises on any, it raises on every process (:meth:`agree`)."""
        if not self.parallel:
            yield
            return
        try:
            yield
        except Exception as error:
            self.agree(error)
        self.agree(None)

    def agree(self, error: BaseException | None) -> None:
        """Raise on every process if ``error`` is set on any: the failed process's own
        error there, a ``RuntimeError`` naming the failed processes on the others. Call it
        on every process after a step that may fail on some (checking the inputs), so the
        others stop instead of waiting for it in the next all-reduce."""
        if not self.parallel:
            if error is not None:
                raise error
            return
        failed = torch.zeros(self.size, dtype=torch.int64, device=_device())
        failed[self.rank] = int(error is not None)
        dist.all_reduce(failed, op=dist.ReduceOp.SUM)
        failed = failed.cpu()
        if error is not None:
            raise error
        if bool(failed.any()):
            ranks = failed.nonzero().reshape(-1).tolist()
            raise RuntimeError(
                f"process(es) {ranks} of {self.size} of this data-parallel fit failed (see "
                "their error); this process stops too"
            )


def _device() -> torch.device:
    """Where the process group's collectives run: this process's GPU for NCCL (which takes
    no CPU tensors), the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
