"""``nb.fit`` on one process against two (``torch.distributed``, gloo on this machine's CPU).

Each problem is fitted by one process holding every row and by two processes holding every
other row (started with ``torch.multiprocessing`` spawn on the loopback address), each
process on one torch thread. Reported: the fit's wall time (from a barrier to the slowest
process's end; imports and start-up excluded), whether the two processes' posteriors are
bit-identical, and the largest ``|mean_2 - mean_1| / sd_1`` and ``|sd_2 / sd_1 - 1|`` over
the unconstrained coordinates, against the one-process fit with the same seed.

    python benchmarks/distributed.py
    python benchmarks/distributed.py --rows 20000 200000
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributions import Bernoulli, HalfNormal, Normal

import noisybayes as nb

FEATURES = 10


class Logistic(nb.Model):
    """``y ~ Bernoulli(sigmoid(alpha + x . beta))``, Normal priors."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.alpha = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 5.0))
        self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 2.5), shape=(d,))

    def forward(self, x: torch.Tensor) -> Bernoulli:
        return Bernoulli(logits=self.alpha + x @ self.beta)


class Linear(nb.Model):
    """``y ~ Normal(x @ beta, sigma)``, ``beta ~ N(0, 10)``, ``sigma ~ HalfNormal(5)``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 10.0), shape=(d,))
        self.sigma = nb.param(HalfNormal(torch.tensor(5.0, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, self.sigma)


def problem(kind: str, rows: int) -> tuple[nb.Model, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, FEATURES, generator=g, dtype=torch.float64)
    beta = torch.linspace(-1.0, 1.0, FEATURES, dtype=torch.float64)
    if kind == "logistic":
        y = torch.bernoulli(torch.sigmoid(x @ beta - 0.5), generator=g)
        return Logistic(FEATURES), x, y
    y = x @ beta + 0.5 * torch.randn(rows, generator=g, dtype=torch.float64)
    return Linear(FEATURES), x, y


SETTINGS: dict[str, dict[str, Any]] = {
    "lbfgs": {"seed": 0},
    "adam": {"seed": 0, "solver": "adam", "batch_size": 1024, "family": "fullrank"},
}


def _worker(rank: int, size: int, port: int, task: tuple[str, int, str], folder: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    kind, rows, solver = task
    model, x, y = problem(kind, rows)
    if size > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=size, timeout=timedelta(seconds=600))
        dist.barrier()
    started = time.perf_counter()
    settings = dict(SETTINGS[solver])
    if solver == "adam":  # the same rows per step in all: 1,024 on one process, 512 on each of two
        settings["batch_size"] //= size
    post = nb.fit(model, x[rank::size], y[rank::size], **settings)
    seconds = time.perf_counter() - started
    torch.save({"seconds": seconds, "mean": post.family.mean().detach(),
                "sd": post.family.variance().detach().sqrt(), "solver": post.info.solver,
                "steps": post.info.n_steps}, Path(folder) / f"{rank}.pt")
    if size > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(task: tuple[str, int, str], size: int) -> list[dict[str, Any]]:
    """Fit ``task`` on ``size`` spawned processes; what each process saved."""
    with tempfile.TemporaryDirectory() as folder:
        context = mp.get_context("spawn")
        port = _free_port()
        procs = [context.Process(target=_worker, args=(r, size, port, task, folder))
                 for r in range(size)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"{task} on {size} process(es) failed")
        return [torch.load(Path(folder) / f"{r}.pt") for r in range(size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--problems", nargs="+", default=["logistic", "linear"])
    parser.add_argument("--solvers", nargs="+", default=["lbfgs", "adam"],
                        choices=list(SETTINGS))
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    print("| problem | rows | solver | 1 process (s) | 2 processes (s) | speed-up "
          "| processes identical | max mean diff (sd) | max sd diff |")
    print("|---|---:|---|---:|---:|---:|---|---:|---:|")
    for kind in args.problems:
        for rows in args.rows:
            for solver in args.solvers:
                task = (kind, rows, solver)
                (one,) = run(task, 1)
                two = run(task, 2)
                identical = all(torch.equal(two[0][k], two[1][k]) for k in ("mean", "sd"))
                mean_diff = ((two[0]["mean"] - one["mean"]).abs() / one["sd"]).max()
                sd_diff = (two[0]["sd"] / one["sd"] - 1).abs().max()
                t1, t2 = one["seconds"], max(r["seconds"] for r in two)
                steps = f" ({one['steps']} steps)" if one["solver"] == "adam" else ""
                print(f"| {kind} | {rows:,} | {one['solver']}{steps} "
                      f"| {t1:.2f} | {t2:.2f} | {t1 / t2:.2f} | {'yes' if identical else 'NO'} "
                      f"| {float(mean_diff):.1e} | {float(sd_diff):.1e} |", flush=True)


if __name__ == "__main__":
    main()
