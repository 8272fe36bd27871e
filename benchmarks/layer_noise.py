"""Noise on a layer's outputs against dropout and Bayesian layers, on the UCI regression sets.

One network for every method (inputs, 50 ReLU units, one output; inputs and target
standardised on the training rows; a Gaussian likelihood with one learned noise scale),
trained by ``nb.nn.train`` with the same steps, batches and learning rate:

* ``plain``: nothing else;
* ``dropout``: ``nn.Dropout(P)`` on the hidden units;
* ``Gaussian dropout``: ``nb.nn.GaussianDropout(P)`` on the hidden units (the same noise
  variance ``P / (1 - P)``);
* ``output noise``: ``nb.nn.GaussianNoise(NOISE_SCALE)`` added to the hidden units;
* ``variational dropout``: both layers ``nb.nn.VariationalDropoutLinear`` (learned
  per-weight ``alpha``, log-uniform prior, the ELBO);
* ``Bayesian layers``: ``nb.bayesian`` of the plain network (``Normal(0, 1)`` priors, the ELBO).

The first four are regularisers: trained with the likelihood alone and evaluated with the
noise off (eval mode), their predictive is ``N(f(x), noise scale^2)``. The last two are
posteriors: the predictive density averages ``N_PREDICT`` weight draws. Reported on the test
rows of the first ``--splits`` published splits, in the target's units: the RMSE of the
predictive mean, the mean test log-likelihood, and the seconds per fit (training and
prediction). ``P`` and ``NOISE_SCALE`` are fixed before the run, not tuned.

    nice -n 19 python benchmarks/layer_noise.py --splits 3          # all six data sets
    python benchmarks/layer_noise.py --splits 1 --steps 200 --epochs 1 yacht  # a smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

import noisybayes as nb
from noisybayes.nn.objective import sample_outputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import uci  # noqa: E402  (the published splits and the training budget)

P = 0.1  # dropout rate; Gaussian dropout at the same noise variance
NOISE_SCALE = 0.1  # sd of the additive noise on the hidden units (ReLU outputs)
HIDDEN = 50
N_PREDICT = 100  # weight draws per prediction of the Bayesian networks
BUDGET = uci.Budget(steps=2000, epochs=100)


def _mlp(d: int, noise: nn.Module | None = None) -> nn.Sequential:
    middle = [noise] if noise is not None else []
    return nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), *middle, nn.Linear(HIDDEN, 1))


METHODS: dict[str, Callable[[int], nn.Module]] = {
    "plain": _mlp,
    "dropout": lambda d: _mlp(d, nn.Dropout(P)),
    "Gaussian dropout": lambda d: _mlp(d, nb.nn.GaussianDropout(P)),
    "output noise": lambda d: _mlp(d, nb.nn.GaussianNoise(NOISE_SCALE)),
    "variational dropout": lambda d: nn.Sequential(
        nb.nn.VariationalDropoutLinear(d, HIDDEN), nn.ReLU(),
        nb.nn.VariationalDropoutLinear(HIDDEN, 1)),
    "Bayesian layers": lambda d: nb.bayesian(_mlp(d)),
}
POSTERIORS = ("variational dropout", "Bayesian layers")


@dataclass
class Scores:
    rmse: list[float] = field(default_factory=list)
    loglik: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    mean, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [torch.as_tensor((a - mean) / sd, dtype=torch.float32) for a in (train, *others)]


def fit_and_score(method: str, x: np.ndarray, y: np.ndarray, train: np.ndarray,
                  test: np.ndarray, seed: int, budget: uci.Budget) -> tuple[float, float, float]:
    """RMSE and mean test log-likelihood (target units) and seconds of one fit."""
    start = time.perf_counter()
    x_train, x_test = _standardise(x[train], x[test])
    y_mean, y_sd = float(y[train].mean()), float(y[train].std())
    y_train = torch.as_tensor((y[train] - y_mean) / y_sd, dtype=torch.float32)[:, None]
    torch.manual_seed(seed)  # the layers' initial weights
    net = METHODS[method](x.shape[1])
    lik = nb.nn.Gaussian()
    bayesian = method in POSTERIORS
    batch = min(len(train), uci.BATCH)
    n_epochs = max(1, math.ceil(budget.steps_for(len(train)) * batch / len(train)))
    nb.nn.train(net, x_train, y_train, likelihood=lik, n_epochs=n_epochs, batch_size=batch,
                learning_rate=1e-2, temperature=1.0 if bayesian else 0.0,
                generator=torch.Generator().manual_seed(seed))
    net.eval()  # the regularisers' noise off; Bayesian layers still draw weights
    y_test = torch.as_tensor((y[test] - y_mean) / y_sd, dtype=torch.float32)
    n_draws = N_PREDICT if bayesian else 1
    with torch.no_grad():
        outputs = sample_outputs(net, x_test, n_draws)  # (S, B, 1)
        log_p = lik.log_prob(outputs.reshape(-1, 1), y_test.repeat(n_draws)).reshape(n_draws, -1)
        density = torch.logsumexp(log_p, 0) - math.log(n_draws) - math.log(y_sd)
        mean = outputs.mean(0)[:, 0].double().numpy() * y_sd + y_mean
    rmse = float(np.sqrt(np.mean((mean - y[test]) ** 2)))
    return rmse, float(density.mean()), time.perf_counter() - start


def run(name: str, root: Path, n_splits: int, budget: uci.Budget) -> dict[str, Scores]:
    """Every method on the first ``n_splits`` splits of one data set."""
    x, y, available = uci.load(name, root)
    scores = {method: Scores() for method in METHODS}
    for k in range(min(n_splits, available)):
        train, test = uci.split(name, root, k)
        for method in METHODS:
            rmse, loglik, seconds = fit_and_score(method, x, y, train, test, k, budget)
            scores[method].rmse.append(rmse)
            scores[method].loglik.append(loglik)
            scores[method].seconds.append(seconds)
    return scores


def _mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan


def compare(a: list[float], b: list[float]) -> int:
    """+1 if ``a`` beats ``b`` by more than two standard errors of the paired difference,
    -1 if it loses by that much, 0 otherwise (higher is better)."""
    diff, se = _mean_se(list(np.subtract(a, b)))
    if not se > 0:
        return 0
    return 1 if diff > 2 * se else -1 if diff < -2 * se else 0


def _named(outcomes: dict[str, int], outcome: int) -> str:
    """How many data sets have ``outcome``, naming them unless it is a tie."""
    names = [name for name, o in outcomes.items() if o == outcome]
    return f"{len(names)}" + (f" ({', '.join(names)})" if names and outcome else "")


def verdict(results: dict[str, dict[str, Scores]], method: str) -> str:
    """One sentence: ``method`` against dropout, data set by data set."""
    tallies = []
    for label, key, sign in (("test log-likelihood", "loglik", 1), ("RMSE", "rmse", -1)):
        outcomes = {name: compare([sign * v for v in getattr(scores[method], key)],
                                  [sign * v for v in getattr(scores["dropout"], key)])
                    for name, scores in results.items()}
        tallies.append(f"{label}: better on {_named(outcomes, 1)}, worse on "
                       f"{_named(outcomes, -1)}, within two paired standard errors on "
                       f"{_named(outcomes, 0)}")
    return f"{method} against dropout, of {len(results)} data sets: " + "; ".join(tallies) + "."


def table(results: dict[str, dict[str, Scores]]) -> str:
    lines = ["| data set | method | RMSE | test LL | s per fit |", "|---|---|---|---|---|"]
    for name, scores in results.items():
        for method, s in scores.items():
            (r, r_se), (ll, ll_se) = _mean_se(s.rmse), _mean_se(s.loglik)
            lines.append(f"| {name} | {method} | {r:.3f} ± {r_se:.3f} | {ll:.3f} ± {ll_se:.3f} "
                         f"| {np.mean(s.seconds):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"default: all of {', '.join(uci.DATASETS)}")
    parser.add_argument("--splits", type=int, default=3, help="the first K splits (default 3)")
    parser.add_argument("--steps", type=int, default=BUDGET.steps,
                        help=f"least optimiser steps per fit (default {BUDGET.steps})")
    parser.add_argument("--epochs", type=int, default=BUDGET.epochs,
                        help=f"least passes over the training rows (default {BUDGET.epochs})")
    parser.add_argument("--data", type=Path, default=uci.DATA, help="the uci data folder")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no UCI data at {args.data}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.datasets) - set(uci.DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {', '.join(uci.DATASETS)}")
    for option in ("splits", "steps", "epochs"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1, got {getattr(args, option)}")
    torch.set_num_threads(1)
    budget = uci.Budget(steps=args.steps, epochs=args.epochs)
    begin = time.perf_counter()
    results = {}
    for name in args.datasets or uci.DATASETS:
        results[name] = run(name, args.data, args.splits, budget)
        print(f"{name}: {time.perf_counter() - begin:.0f} s", file=sys.stderr)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}; {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), 1 torch "
          f"thread; wall time {time.perf_counter() - begin:.0f} s; noisybayes {nb.__version__}, "
          f"torch {torch.__version__}; {args.splits} splits, at least {budget.steps} steps and "
          f"{budget.epochs} epochs per fit, batch {uci.BATCH}, P = {P}, "
          f"NOISE_SCALE = {NOISE_SCALE}\n")
    print(table(results))
    print()
    for method in ("Gaussian dropout", "output noise", "variational dropout", "Bayesian layers"):
        print(f"- {verdict(results, method)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
