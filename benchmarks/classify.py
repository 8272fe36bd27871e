"""Classification at the defaults: ``nb.BNNClassifier`` against scikit-learn's ``MLPClassifier``.

Protocol: on each data set (scikit-learn's bundled ``digits`` and ``breast_cancer``), 5
stratified 70/30 splits (``StratifiedShuffleSplit``, seeds 0-4); inputs standardised on the
training rows (``StandardScaler``); each classifier fits the training rows with its
default arguments and one hidden layer of 100 units, ``BNNClassifier(hidden=(100,),
seed=k)`` (``method="ivon"`` too as its own row) and ``MLPClassifier(hidden_layer_sizes=
(100,), random_state=k)``, and is scored on the test rows: accuracy, the mean test
negative log-likelihood of the predicted probabilities, the expected calibration error
(:func:`expected_calibration_error`, 15 equal-width bins of the top-class probability)
and the fit's wall time. Means over the splits with standard errors (sd / sqrt(5)); the
ratios divide each row's mean by ``MLPClassifier``'s on the same data set.

    python benchmarks/classify.py
    python benchmarks/classify.py --datasets digits --methods layers,mlp

Everything runs in one process on one thread (torch and the BLAS scikit-learn uses).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import noisybayes as nb

DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": lambda: load_digits(return_X_y=True),
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True),
}
METHODS = ("mlp", "layers", "ivon")
N_SPLITS, TEST_SIZE, HIDDEN, N_BINS = 5, 0.3, 100, 15


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """``ECE = sum_b (n_b / n) |acc_b - conf_b|`` over ``n_bins`` equal-width bins of the
    top-class probability ``conf_i = max_k p_ik`` (bin ``b`` holds ``(b-1)/n_bins < conf <=
    b/n_bins``), ``acc_b`` the bin's accuracy; Guo et al. (2017), "On calibration of modern
    neural networks", eq. 3. ``probs`` ``(n, K)``, ``y`` ``(n,)`` column indices."""
    confidence = probs.max(1)
    correct = (probs.argmax(1) == y).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        rows = bins == b
        if rows.any():
            total += rows.sum() * abs(correct[rows].mean() - confidence[rows].mean())
    return total / len(y)


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    """``-mean_i log p_i,y_i`` (probabilities floored at 1e-15, as scikit-learn's log_loss)."""
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0)).mean())


def classifier(method: str, seed: int) -> object:
    """The method's classifier at its defaults (one hidden layer of ``HIDDEN`` units)."""
    if method == "mlp":
        return MLPClassifier(hidden_layer_sizes=(HIDDEN,), random_state=seed)
    return nb.BNNClassifier(hidden=(HIDDEN,), method=method, seed=seed)


@dataclass
class Scores:
    dataset: str
    method: str
    accuracy: list[float] = field(default_factory=list)
    nll: list[float] = field(default_factory=list)
    ece: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def run(dataset: str, methods: list[str], n_splits: int = N_SPLITS) -> list[Scores]:
    """Every method on the same ``n_splits`` stratified splits of ``dataset``."""
    x, y = DATASETS[dataset]()
    classes, y = np.unique(y, return_inverse=True)
    scores = {m: Scores(dataset, m) for m in methods}
    splits = [next(StratifiedShuffleSplit(1, test_size=TEST_SIZE, random_state=k).split(x, y))
              for k in range(n_splits)]
    for k, (train, test) in enumerate(splits):
        scaler = StandardScaler().fit(x[train])
        x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
        for m in methods:
            model = classifier(m, seed=k)
            start = time.perf_counter()
            with warnings.catch_warnings():  # MLPClassifier's max_iter is its default
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x_train, y[train])  # type: ignore[attr-defined]
            seconds = time.perf_counter() - start
            probs = model.predict_proba(x_test)  # type: ignore[attr-defined]
            s = scores[m]
            s.accuracy.append(float((probs.argmax(1) == y[test]).mean()))
            s.nll.append(negative_log_likelihood(probs, y[test]))
            s.ece.append(expected_calibration_error(probs, y[test]))
            s.seconds.append(seconds)
    return [scores[m] for m in methods]


def _mean_se(values: list[float], digits: int = 3) -> str:
    a = np.asarray(values)
    se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{a.mean():.{digits}f} ± {se:.{digits}f}"


def table(results: list[Scores]) -> str:
    lines = ["| data set | method | accuracy | test NLL | ECE | fit s | NLL / MLP | ECE / MLP | "
             "time / MLP |", "|---" * 9 + "|"]
    reference = {r.dataset: r for r in results if r.method == "mlp"}
    for r in results:
        ref = reference.get(r.dataset)

        def ratio(ours: list[float], theirs: list[float] | None) -> str:
            return "-" if theirs is None else f"{np.mean(ours) / np.mean(theirs):.2f}"

        lines.append(
            f"| {r.dataset} | {r.method} | {_mean_se(r.accuracy)} | {_mean_se(r.nll)} | "
            f"{_mean_se(r.ece)} | {_mean_se(r.seconds, 2)} | "
            f"{ratio(r.nll, ref.nll if ref else None)} | "
            f"{ratio(r.ece, ref.ece if ref else None)} | "
            f"{ratio(r.seconds, ref.seconds if ref else None)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, of {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--splits", type=int, default=N_SPLITS, help="splits per data set")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    if not datasets or set(datasets) - set(DATASETS):
        parser.error(f"--datasets must name some of {', '.join(DATASETS)}, got {args.datasets!r}")
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods must name some of {', '.join(METHODS)}, got {args.methods!r}")
    torch.set_num_threads(1)
    threadpool_limits(1)  # scikit-learn's BLAS on one thread too
    begin = time.perf_counter()
    results = [s for d in datasets for s in run(d, methods, args.splits)]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}; {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, 1 torch "
          f"thread); wall time {time.perf_counter() - begin:.0f} s; noisybayes "
          f"{nb.__version__}, torch {torch.__version__}, scikit-learn {sklearn.__version__}; "
          f"{args.splits} stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} splits\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
