"""The UCI regression benchmark for ``nb.BNNRegressor`` (one hidden layer of 50 units, as the
protocol fixes; ``--defaults``: the estimator's default network, two hidden layers of 50).

Protocol (``../shared/data/uci/README.md``): on each of the 20 published splits,
standardise on the training rows, fit, and report on the test rows in the target's
original units the RMSE of the predictive mean and the mean test log-likelihood of the
full predictive; average over splits with standard errors (sd / sqrt(n_splits)).
Each split is fitted by each of ``METHODS_RUN`` on the same rows: ``"layers"``, an
equal-weight mixture of ``N_COMPONENTS`` mean-field Gaussians (``n_components``), and
``"ivon"``, one mean-field Gaussian learned by ``nb.optim.IVON`` (``method="ivon"``; it
holds one posterior), both at temperature 1 (the posterior; ``--defaults`` uses the
estimator's 0.5) with the same steps, and the table gives each method's wall time. The
hyper-parameters are one setting for every data set and split, fixed before the run:
``Normal(0, 1)`` priors on the standardised scale and the heteroscedastic Student-t
likelihood with learned degrees of freedom, which nests the Gaussian, Student-t and
heteroscedastic Gaussian likelihoods (``uci_choice.py`` runs
the validation comparisons behind that choice; ``RESULTS.md`` has them); nothing is
chosen per data set or split. ``--tune-per-split`` instead chooses on each split's own training
rows, by the validation log-likelihood of single-component fits averaged over
``INNER_SPLITS`` random 80/20 splits: first the prior sd (from ``PRIOR_GRID``, Gaussian
likelihood), then, at that prior sd, the likelihood (from ``LIKELIHOODS``). The
estimator's defaults do the rest: the Student-t degrees of freedom start at 5, a
homoscedastic noise scale at 0.1 of y's sd; the test density averages ``N_PREDICT``
weight draws. Each fit takes at least 4000 optimiser steps and 500 epochs (whole epochs,
so more).

    python benchmarks/uci.py                      # the full protocol, all six data sets
    python benchmarks/uci.py --quick yacht        # QUICK MODE: 2 splits, short training
    python benchmarks/uci.py --methods ivon       # one method only
    python benchmarks/uci.py --defaults           # BNNRegressor() as a user gets it (two
                                                  # hidden layers: not the protocol's one)
    python benchmarks/uci.py --record benchmarks/RESULTS.md

The networks are tiny, so each data set runs in its own process on one torch thread;
``--jobs`` (default 2) data sets run at once.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
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
PRIOR_SCALE, LIKELIHOOD = 1.0, "heteroscedastic_student_t"  # without --tune-per-split
PRIOR_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
LIKELIHOODS = ("gaussian", "student_t", "heteroscedastic", "heteroscedastic_student_t")
INNER_SPLITS = 3  # validation splits averaged per hyper-parameter choice
N_COMPONENTS = 5
BATCH = 512
N_PREDICT = 500  # weight draws per prediction: the log-mean-exp of the test density
METHODS_RUN = ("layers", "ivon")  # nb.BNNRegressor's methods, side by side


@dataclass
class Result:
    dataset: str
    method: str
    rmse: list[float]
    loglik: list[float]
    choices: list[tuple[float, str]]  # (prior sd, likelihood) of each split
    n_steps: int
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


@dataclass(frozen=True)
class Budget:
    """Each fit takes at least ``steps`` optimiser steps and ``epochs`` passes over the rows."""

    steps: int
    epochs: int

    def steps_for(self, n_rows: int) -> int:
        return max(self.steps, self.epochs * math.ceil(n_rows / min(n_rows, BATCH)))


def regressor(prior_scale: float, likelihood: str, budget: Budget, n_rows: int, seed: int,
              n_components: int, method: str = "layers") -> nb.BNNRegressor:
    """The method's estimator (its default step size); IVON fits one component."""
    batch = min(n_rows, BATCH)  # large batches: less gradient noise in the scales per step
    n_epochs = max(1, math.ceil(budget.steps_for(n_rows) * batch / n_rows))
    return nb.BNNRegressor(hidden=(50,), method=method, likelihood=likelihood,
                           prior_scale=prior_scale, n_epochs=n_epochs, batch_size=batch,
                           n_components=1 if method == "ivon" else n_components,
                           n_predict_samples=N_PREDICT, temperature=1.0, seed=seed)


def choose_hyperparameters(x: np.ndarray, y: np.ndarray, budget: Budget,
                           seed: int, method: str = "layers") -> tuple[float, str]:
    """Prior sd, then likelihood, by the validation log-likelihood averaged over
    ``INNER_SPLITS`` random 80/20 splits of the training rows."""
    rng = np.random.default_rng(seed)
    cut = int(0.8 * len(y))
    orders = [rng.permutation(len(y)) for _ in range(INNER_SPLITS)]

    def score(scale: float, likelihood: str) -> float:
        values = []
        for i, order in enumerate(orders):
            fit_rows, val_rows = order[:cut], order[cut:]
            reg = regressor(scale, likelihood, budget, cut, seed + i, n_components=1,
                            method=method)
            values.append(reg.fit(x[fit_rows], y[fit_rows]).score(x[val_rows], y[val_rows]))
        return float(np.mean(values))

    by_scale = {scale: score(scale, "gaussian") for scale in PRIOR_GRID}
    scale = max(by_scale, key=lambda s: by_scale[s])
    by_likelihood = {"gaussian": by_scale[scale]}
    by_likelihood |= {lik: score(scale, lik) for lik in LIKELIHOODS if lik != "gaussian"}
    return scale, max(by_likelihood, key=lambda lik: by_likelihood[lik])


def run(name: str, root: Path, n_splits: int | None, budget: Budget, tune: bool,
        method: str = "layers", defaults: bool = False) -> Result:
    """All splits of one data set by one method; ``tune`` chooses the hyper-parameters on
    each split's training rows, else they are ``PRIOR_SCALE`` and ``LIKELIHOOD``;
    ``defaults`` fits ``nb.BNNRegressor(method=method, seed=k)`` instead, every other
    argument (training length, likelihood, components, draws) at its default."""
    torch.set_num_threads(1)
    x, y, available = load(name, root)
    n_splits = available if n_splits is None else min(n_splits, available)
    start = time.perf_counter()
    rmse, loglik, choices = [], [], []
    for k in range(n_splits):
        train, test = split(name, root, k)
        if defaults:
            reg = nb.BNNRegressor(method=method, seed=k).fit(x[train], y[train])
            choices.append((reg.prior_scale, reg.likelihood))
        else:
            choice = (choose_hyperparameters(x[train], y[train], budget, seed=k, method=method)
                      if tune else (PRIOR_SCALE, LIKELIHOOD))
            choices.append(choice)
            reg = regressor(*choice, budget, len(train), seed=k, n_components=N_COMPONENTS,
                            method=method).fit(x[train], y[train])
        mean = reg.predict(x[test])
        rmse.append(float(np.sqrt(np.mean((mean - y[test]) ** 2))))
        loglik.append(reg.score(x[test], y[test]))
    return Result(name, method, rmse, loglik, choices, reg.info_.n_steps,
                  time.perf_counter() - start)


def _counts(values: list) -> str:
    """``"1"`` when all values agree, else ``"1 x12, 2 x8"``."""
    counted = [(f"{v:g}" if isinstance(v, float) else v, n) for v, n in Counter(values).most_common()]
    if len(counted) == 1:
        return counted[0][0]
    return ", ".join(f"{v} x{n}" for v, n in counted)


def _mean_se(values: list[float]) -> str:
    a = np.asarray(values)
    se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{a.mean():.3f} ± {se:.3f}"


def table(results: list[Result], header: str) -> str:
    lines = [header, "",
             "| data set | method | splits | prior sd | likelihood | steps | seconds | RMSE | "
             "test LL | " + " | ".join(METHODS) + " |",
             "|---" * (9 + len(METHODS)) + "|"]
    for r in results:
        published = " | ".join(f"{a:g} / {b:g}" for a, b in PUBLISHED[r.dataset])
        scales, likelihoods = zip(*r.choices, strict=True)
        lines.append(f"| {r.dataset} | {r.method} | {len(r.rmse)} | {_counts(list(scales))} | "
                     f"{_counts(list(likelihoods))} | {r.n_steps} | {r.seconds:.0f} | "
                     f"{_mean_se(r.rmse)} | {_mean_se(r.loglik)} | {published} |")
    lines.append("")
    lines.append("Published columns: RMSE / test log-likelihood (mean over 20 splits). "
                 "seconds: the method's wall time over all splits of the data set (with "
                 "the choice of hyper-parameters when tuned).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"default: all of {', '.join(DATASETS)}")
    parser.add_argument("--quick", action="store_true",
                        help="QUICK MODE: 2 splits, 1500 steps and 100 epochs "
                             "(not the protocol)")
    parser.add_argument("--splits", type=int, default=None, help="use only the first K splits")
    parser.add_argument("--tune-per-split", action="store_true",
                        help="choose the hyper-parameters on each split's own training rows "
                             "(many times the time) instead of fixing them")
    parser.add_argument("--defaults", action="store_true",
                        help="nb.BNNRegressor at its defaults (only method and seed given), "
                             "as a user gets it, instead of the fixed setting")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per fit")
    parser.add_argument("--data", type=Path, default=DATA, help="the uci data folder")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="data sets run at once, one process each (default 2)")
    parser.add_argument("--methods", default=",".join(METHODS_RUN),
                        help=f"comma-separated, of {', '.join(METHODS_RUN)} (default: all)")
    parser.add_argument("--record", type=Path, default=None, help="append the table here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no UCI data at {args.data}", file=sys.stderr)
        return 2
    n_splits = args.splits if args.splits is not None else (2 if args.quick else None)
    budget = Budget(steps=args.steps if args.steps is not None else (1500 if args.quick else 4000),
                    epochs=100 if args.quick else 500)
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {', '.join(DATASETS)}")
    names = args.datasets or list(DATASETS)
    methods = [m for m in args.methods.split(",") if m]
    if not methods or set(methods) - set(METHODS_RUN):
        parser.error(f"--methods must name some of {', '.join(METHODS_RUN)}, got {args.methods!r}")
    largest_first = sorted(names, key=lambda n: -(args.data / n / "data.txt").stat().st_size)
    begin = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {(name, m): pool.submit(run, name, args.data, n_splits, budget,
                                             args.tune_per_split, m, args.defaults)
                   for name in largest_first for m in methods}
        results = [futures[name, m].result() for name in names for m in methods]
    for r in results:
        print(f"{r.dataset} ({r.method}): {r.seconds:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - begin
    mode = ("QUICK MODE (not the protocol: few splits or short training)"
            if args.quick or args.splits else "full protocol")
    mode += (", hyper-parameters chosen on each split's training rows" if args.tune_per_split
             else ", every argument at its default" if args.defaults
             else ", fixed hyper-parameters")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    setting = ("nb.BNNRegressor() at its defaults" if args.defaults else
               f"nb.BNNRegressor (50 hidden units, temperature 1; layers: a mixture of "
               f"{N_COMPONENTS} mean-field Gaussians, ivon: one)")
    header = (f"## UCI, {setting}: {mode}\n\n"
              f"{stamp}; {platform.node()} ({platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, {args.jobs} data sets at once, 1 torch thread each); "
              f"wall time {wall:.0f} s; noisybayes {nb.__version__}, torch {torch.__version__}")
    text = table(results, header)
    print(text)
    if args.record is not None:
        with args.record.open("a") as handle:
            handle.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
