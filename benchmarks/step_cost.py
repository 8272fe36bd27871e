"""The cost of a Bayesian training step: one epoch of ``nb.bayesian(mlp)`` against Adam.

Data: 20,000 x 8 standard normal inputs, ``y = sin(x_1) + x_2 x_3 + 0.1 eps``; network: an
MLP of two hidden layers of 50 ReLU units, batch 128 (157 steps an epoch). The reference is
the same deterministic MLP trained by the plain PyTorch loop a user writes (a random
permutation, index slices, ``mse_loss``, ``torch.optim.Adam``); the Bayesian epoch is
``nb.nn.train(nb.bayesian(mlp), x, y, likelihood=nb.nn.Gaussian(), n_epochs=1,
batch_size=128)``, the whole call; the IVON epoch is ``nb.nn.train_ivon`` on the plain MLP
(the optimizer holds the posterior: ``BNNRegressor(method="ivon")``'s route). Each is timed
``--repeats`` times after one warm-up, alternating; the table gives the fastest epoch of each in CPU time of the process (the
measure least disturbed by other work on a shared machine) and the ratio.

    python benchmarks/step_cost.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from torch import nn

import noisybayes as nb

N, D, HIDDEN, BATCH = 20_000, 8, 50, 128


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    y = torch.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * torch.randn(N, generator=g)
    return x, y[:, None]


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(D, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, 1))


def adam_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> None:
    """One epoch of the deterministic MLP, as a user writes it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(N, generator=g)
    for start in range(0, N, BATCH):
        index = order[start : start + BATCH]
        optimizer.zero_grad()
        F.mse_loss(model(x[index]), y[index]).backward()
        optimizer.step()


def bayesian_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   g: torch.Generator) -> None:
    """One epoch of the converted network through ``nb.nn.train``."""
    nb.nn.train(model, x, y, likelihood=nb.nn.Gaussian(), n_epochs=1, batch_size=BATCH,
                generator=g, progress=False)


def ivon_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> None:
    """One epoch of the plain MLP whose optimizer, IVON, holds the posterior."""
    nb.nn.train_ivon(model, x, y, likelihood=nb.nn.Gaussian(), n_epochs=1, batch_size=BATCH,
                     generator=g, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = data()
    torch.manual_seed(0)
    plain, bayes, ivon = mlp(), nb.bayesian(mlp()), mlp()
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"adam": [], "bayesian": [], "ivon": []}
    runs = (("adam", adam_epoch, plain), ("bayesian", bayesian_epoch, bayes),
            ("ivon", ivon_epoch, ivon))
    for repeat in range(args.repeats + 1):
        for name, run, model in runs:
            start = time.process_time()
            run(model, x, y, g)
            if repeat:  # the first round warms up
                times[name].append(time.process_time() - start)
    adam_s, bayes_s, ivon_s = (min(times[k]) for k in ("adam", "bayesian", "ivon"))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}; {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} torch thread(s)); torch {torch.__version__}; fastest of "
          f"{args.repeats} epochs each\n")
    print("| training | s per epoch | ms per step | x Adam |\n|---|---|---|---|")
    steps = -(-N // BATCH)
    for name, seconds in (("deterministic MLP, Adam", adam_s),
                          ("nb.bayesian(mlp), nb.nn.train", bayes_s),
                          ("plain mlp, nb.nn.train_ivon", ivon_s)):
        print(f"| {name} | {seconds:.3f} | {1000 * seconds / steps:.2f} | "
              f"{seconds / adam_s:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
