"""``nb.fit`` on several processes: each holds its own rows, all end with the same posterior.

Run on two processes of this machine (gloo on the CPU):

    torchrun --nproc-per-node 2 examples/distributed_fit.py

or alone, as one process holding every row: ``python examples/distributed_fit.py``.

Each process makes the same simulated logistic-regression data and keeps every other row
(``x[rank::world_size]``); in a real run each process reads its own part (its files, or its
range of a shared data set). ``nb.fit`` sees that ``torch.distributed`` is initialised,
counts ``N`` over all processes, sums every whole-data quantity across them and returns
the same posterior on each. Process 0 prints the summary and how far the processes' means
are apart (0: they are identical).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributions import Bernoulli, Normal

import noisybayes as nb


class Logistic(nb.Model):
    """``y ~ Bernoulli(sigmoid(alpha + x . beta))``, Normal priors."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.alpha = nb.param(Normal(0.0, 5.0))
        self.beta = nb.param(Normal(0.0, 2.5), shape=(n_features,))

    def forward(self, x: torch.Tensor) -> Bernoulli:
        return Bernoulli(logits=self.alpha + x @ self.beta)


def simulated(n: int = 20_000, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The same rows on every process (seeded): ``beta = (1, -1, 0.5, 0, 0)``, ``alpha = -0.5``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    beta = torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0])
    y = torch.bernoulli(torch.sigmoid(-0.5 + x @ beta), generator=g)
    return x, y


def main() -> None:
    launched = "RANK" in os.environ  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, ...
    if launched:
        dist.init_process_group("gloo")  # "nccl" for one GPU per process
    rank = dist.get_rank() if launched else 0
    size = dist.get_world_size() if launched else 1
    x, y = simulated()
    mine = slice(rank, None, size)  # this process's rows
    post = nb.fit(Logistic(x.shape[1]), x[mine], y[mine], seed=0)

    mean = post.family.mean().detach()
    apart = mean - mean  # how far this process's means are from process 0's
    if launched:
        first = mean.clone()
        dist.broadcast(first, src=0)
        apart = (mean - first).abs()
        dist.all_reduce(apart, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(f"{size} process(es), {post.info.n_data} rows in all, solver {post.info.solver}")
        print(post.summary().round(3).to_string())
        print(f"largest difference of the means between processes: {float(apart.max()):.3g}")
    if launched:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
