"""The UCI regression benchmark for ``nb.BNNRegressor`` (one hidden layer of 50 units).

Protocol (``../shared/data/uci/README.md``): on each of the 20 published splits,
standardise on the training rows, fit, and report on the test rows in the target's
original units the RMSE of the predictive mean and the mean test log-likelihood of the
full predictive; average over splits with standard errors (sd / sqrt(n_splits)).
Hyper-parameters (the prior sd, from ``PRIOR_GRID``) are chosen per data set by the
validation log-likelihood on an inner 80/20 split of split 0's training rows, never on
test rows, then used for every split. The estimator's defaults do the rest: the noise
sd starts at 0.1 (in y's sd) and is learned; the test density averages ``N_PREDICT``
weight draws.

    python benchmarks/uci.py                      # the full protocol, all six data sets
    python benchmarks/uci.py --quick yacht        # QUICK MODE: 2 splits, short training
    python benchmarks/uci.py --record benchmarks/RESULTS.md

The networks are tiny, so the script runs torch on one thread by default (``--threads``):
on a shared machine extra OpenMP threads mostly spin.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import noisybayes as nb

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "uci"
DATASETS = ("bostonHousing", "concrete", "energy", "kin8nm", "wine-quality-red", "yacht")

# (RMSE, test log-likelihood): PBP, MC dropout, MC dropout (tuned), deep ensembles, exact BLR
PUBLISHED: dict[str, list[tuple[float, float]]] = {
    "bostonHousing": [(3.01, -2.57), (2.97, -2.46), (2.90, -2.40), (3.28, -2.41), (4.60, -2.97)],
    "concrete": [(5.67, -3.16), (5.23, -3.04), (4.82, -2.93), (6.03, -3.06), (10.32, -3.76)],
    "energy": [(1.80, -2.04), (1.66, -1.99), (0.54, -1.21), (2.09, -1.38), (3.06, -2.54)],
    "kin8nm": [(0.10, 0.90), (0.10, 0.95), (0.08, 1.14), (0.09, 1.20), (0.202, 0.18)],
    "wine-quality-red": [(0.64, -0.97), (0.62, -0.93), (0.62, -0.93), (0.64, -0.94),
                         (0.654, -1.00)],
    "yacht": [(1.02, -1.63), (1.11, -1.55), (0.67, -1.25), (1.58, -1.18), (8.94, -3.62)],
}
METHODS = ("PBP", "dropout", "dropout tuned", "ensembles", "exact BLR")
PRIOR_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
N_PREDICT = 500  # weight draws per prediction: the log-mean-exp of the test density


@dataclass
class Result:
    dataset: str
    rmse: list[float]
    loglik: list[float]
    prior_scale: float
    seconds: float


def _ints(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64, ndmin=1)


def load(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, int]:
    folder = root / name
    data = np.loadtxt(folder / "data.txt")
    features = _ints(folder / "index_features.txt")
    target = int(_ints(folder / "index_target.txt")[0])
    n_splits = int(_ints(folder / "n_splits.txt")[0])
    return data[:, features], data[:, target], n_splits


def split(name: str, root: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    folder = root / name
    return _ints(folder / f"index_train_{k}.txt"), _ints(folder / f"index_test_{k}.txt")


def regressor(prior_scale: float, n_steps: int, n_rows: int, seed: int) -> nb.BNNRegressor:
    batch = min(n_rows, 512)  # large batches: less gradient noise in the scales per step
    n_epochs = max(1, math.ceil(n_steps * batch / n_rows))
    return nb.BNNRegressor(hidden=(50,), prior_scale=prior_scale, n_epochs=n_epochs,
                           batch_size=batch, learning_rate=1e-2, n_predict_samples=N_PREDICT,
                           seed=seed)


def choose_prior_scale(x: np.ndarray, y: np.ndarray, n_steps: int, seed: int) -> float:
    """The prior scale with the best validation log-likelihood on an inner 80/20 split."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    fit_rows, val_rows = order[:cut], order[cut:]
    scores = {}
    for scale in PRIOR_GRID:
        reg = regressor(scale, n_steps, cut, seed).fit(x[fit_rows], y[fit_rows])
        scores[scale] = reg.score(x[val_rows], y[val_rows])
    return max(scores, key=lambda s: scores[s])


def run(name: str, root: Path, n_splits: int | None, n_steps: int, tune: bool) -> Result:
    x, y, available = load(name, root)
    n_splits = available if n_splits is None else min(n_splits, available)
    start = time.perf_counter()
    train0, _ = split(name, root, 0)
    scale = choose_prior_scale(x[train0], y[train0], n_steps, seed=0) if tune else 1.0
    rmse, loglik = [], []
    for k in range(n_splits):
        train, test = split(name, root, k)
        reg = regressor(scale, n_steps, len(train), seed=k).fit(x[train], y[train])
        mean = reg.predict(x[test]).numpy()
        rmse.append(float(np.sqrt(np.mean((mean - y[test]) ** 2))))
        loglik.append(reg.score(x[test], y[test]))
    return Result(name, rmse, loglik, scale, time.perf_counter() - start)


def _mean_se(values: list[float]) -> str:
    a = np.asarray(values)
    se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{a.mean():.3f} ± {se:.3f}"


def table(results: list[Result], header: str) -> str:
    lines = [header, "",
             "| data set | splits | prior sd | RMSE | test LL | " + " | ".join(METHODS) + " |",
             "|---" * (5 + len(METHODS)) + "|"]
    for r in results:
        published = " | ".join(f"{a:g} / {b:g}" for a, b in PUBLISHED[r.dataset])
        lines.append(f"| {r.dataset} | {len(r.rmse)} | {r.prior_scale:g} | {_mean_se(r.rmse)} | "
                     f"{_mean_se(r.loglik)} | {published} |")
    lines.append("")
    lines.append("Published columns: RMSE / test log-likelihood (mean over 20 splits).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"default: all of {', '.join(DATASETS)}")
    parser.add_argument("--quick", action="store_true",
                        help="QUICK MODE: 2 splits, 1500 steps, no tuning (not the protocol)")
    parser.add_argument("--splits", type=int, default=None, help="use only the first K splits")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per fit")
    parser.add_argument("--data", type=Path, default=DATA, help="the uci data folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--record", type=Path, default=None, help="append the table here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no UCI data at {args.data}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    n_splits = args.splits if args.splits is not None else (2 if args.quick else None)
    n_steps = args.steps if args.steps is not None else (1500 if args.quick else 4000)
    tune = not args.quick
    begin = time.perf_counter()
    results = []
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {', '.join(DATASETS)}")
    for name in args.datasets or DATASETS:
        results.append(run(name, args.data, n_splits, n_steps, tune))
        print(f"{name}: {results[-1].seconds:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - begin
    mode = ("QUICK MODE (not the protocol: few splits, short training, no tuning)"
            if args.quick or args.splits else "full protocol")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"## UCI, nb.BNNRegressor (50 hidden units, mean-field VI, temperature 1): {mode}\n\n"
              f"{stamp}; {platform.node()} ({platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} torch thread(s)); {n_steps} steps per fit; "
              f"wall time {wall:.0f} s; noisybayes {nb.__version__}, torch {torch.__version__}")
    text = table(results, header)
    print(text)
    if args.record is not None:
        with args.record.open("a") as handle:
            handle.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
