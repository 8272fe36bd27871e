"""How ``benchmarks/uci.py``'s one fixed setting was chosen, on training rows only.

For each data set and each of its first ``SPLITS[name]`` published splits: one random
80/20 split of that split's training rows (seed ``100 + k``), single-network fits with
``uci.py``'s training budget, and the log-likelihood of the 20% validation rows. Two
comparisons, each printed as a table of paired differences (mean ± standard error over
the splits) from a reference row:

1. the likelihoods of ``nb.BNNRegressor`` at prior sd 1, against the Gaussian;
2. the prior sd, with the heteroscedastic Student-t, against sd 1.

No test row is read; but every row of these data sets is a test row of some split, so the
choice these tables made is one global choice for all data sets, never per split.

``--settings`` instead compares ``nb.BNNRegressor(seed=k, **setting)`` at its defaults (its
own training length, not ``uci.py``'s budget) on the same validation rows, each setting a
string of keywords (``"method=ivon,likelihood=gaussian"``; ``"method=layers|ivon"`` chooses
among values on the fit rows, see :func:`_estimator`; ``""`` is the defaults: the
layers, two hidden layers of 50, the heteroscedastic Student-t, temperature 0.5; runs
recorded before those defaults pass ``hidden=50``, ``method=ivon`` or ``temperature=1.0`` as
they name to be reproduced): validation LL as paired differences
from the first, and the RMSE of the predictive mean as a ratio to the first's.

    python benchmarks/uci_choice.py               # both tables, all six data sets
    python benchmarks/uci_choice.py yacht         # one data set
    python benchmarks/uci_choice.py --settings "method=layers" "method=ivon"
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, ShuffleSplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import uci  # noqa: E402  (the benchmark's data loading and training budget)
from classify_choice import parse_setting  # noqa: E402  (keyword strings)

import noisybayes as nb  # noqa: E402

SPLITS = {"bostonHousing": 5, "concrete": 4, "energy": 4, "kin8nm": 3, "wine-quality-red": 4,
          "yacht": 5}
# (row label, likelihood, df): df None is learned
LIKELIHOODS = [
    ("Gaussian", "gaussian", None),
    ("Student-t, df 4", "student_t", 4.0),
    ("Student-t, df learned", "student_t", None),
    ("heteroscedastic Gaussian", "heteroscedastic", None),
    ("heteroscedastic Student-t, df learned", "heteroscedastic_student_t", None),
]
PRIORS = (1.0, 0.25, 0.5, 2.0, 4.0)  # the reference first
BUDGET = uci.Budget(steps=4000, epochs=500)


def _validation_rows(name: str, root: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``k``'s training rows cut 80/20 (seed ``100 + k``): fit rows, validation rows."""
    train, _ = uci.split(name, root, k)
    order = np.random.default_rng(100 + k).permutation(len(train))
    cut = int(0.8 * len(train))
    return train[order[:cut]], train[order[cut:]]


def _estimator(setting: str, k: int) -> nb.BNNRegressor | GridSearchCV:
    """``BNNRegressor(seed=k, **setting)``; a keyword whose values are joined by ``|``
    (``"method=layers|ivon"``) is chosen among them by scikit-learn's ``GridSearchCV`` on one
    80/20 cut of the rows it is fitted on (its ``score``, the log predictive density), then
    refitted on all of them."""
    chosen = [part for part in setting.split(",") if "|" in part]
    fixed = parse_setting(",".join(part for part in setting.split(",") if "|" not in part))
    grid = {}
    for part in chosen:
        key, values = part.split("=")
        grid[key] = [parse_setting(f"{key}={v}")[key] for v in values.split("|")]
    reg = nb.BNNRegressor(seed=k, **fixed)
    if not grid:
        return reg
    return GridSearchCV(reg, grid, cv=ShuffleSplit(n_splits=1, test_size=0.2, random_state=k))


def settings_scores(name: str, root: Path, settings: list[str],
                    n_splits: int) -> dict[str, dict[str, list[float]]]:
    """``{"LL" | "RMSE": {setting: validation score per split}}`` of ``BNNRegressor`` at its
    defaults plus each setting's keywords, on the first ``n_splits`` splits (the RMSE of
    the predictive mean, in y's units)."""
    torch.set_num_threads(1)
    x, y, _ = uci.load(name, root)
    scores: dict[str, dict[str, list[float]]] = {
        kind: {setting: [] for setting in settings} for kind in ("LL", "RMSE")}
    for k in range(n_splits):
        fit_rows, val_rows = _validation_rows(name, root, k)
        for setting in settings:
            reg = _estimator(setting, k).fit(x[fit_rows], y[fit_rows])
            scores["LL"][setting].append(reg.score(x[val_rows], y[val_rows]))
            error = reg.predict(x[val_rows]) - y[val_rows]
            scores["RMSE"][setting].append(float(np.sqrt(np.mean(error**2))))
    return scores


def validation_logliks(name: str, root: Path) -> dict[str, list[float]]:
    """``{row label: validation log-likelihood per split}`` for both comparisons."""
    torch.set_num_threads(1)
    x, y, _ = uci.load(name, root)
    settings = {label: (1.0, likelihood, df) for label, likelihood, df in LIKELIHOODS}
    settings |= {f"prior sd {p:g}": (p, "heteroscedastic_student_t", None) for p in PRIORS}
    scores: dict[str, list[float]] = {label: [] for label in settings}
    for k in range(SPLITS[name]):
        fit_rows, val_rows = _validation_rows(name, root, k)
        cut = len(fit_rows)
        fitted: dict[tuple, float] = {}  # one fit per distinct setting
        for label, setting in settings.items():
            if setting not in fitted:
                prior, likelihood, df = setting
                reg = uci.regressor(prior, likelihood, BUDGET, cut, seed=k, n_components=1)
                reg.df = df
                reg.fit(x[fit_rows], y[fit_rows])
                fitted[setting] = reg.score(x[val_rows], y[val_rows])
            scores[label].append(fitted[setting])
    return scores


def _difference(values: list[float], reference: list[float]) -> str:
    d = np.asarray(values) - np.asarray(reference)
    se = d.std(ddof=1) / math.sqrt(len(d))
    return f"{d.mean():+.3f} ± {se:.3f}"


def tables(results: dict[str, dict[str, list[float]]]) -> str:
    names = list(results)
    header = "| | " + " | ".join(names) + " |\n" + "|---" * (1 + len(names)) + "|"
    lines = ["Likelihoods at prior sd 1 (first row: validation LL; others: difference)", "",
             header]
    first = LIKELIHOODS[0][0]
    lines.append(f"| {first} | " + " | ".join(f"{np.mean(results[n][first]):.3f}"
                                               for n in names) + " |")
    for label, _, _ in LIKELIHOODS[1:]:
        lines.append(f"| {label} | " + " | ".join(
            _difference(results[n][label], results[n][first]) for n in names) + " |")
    lines += ["", "Prior sd with the heteroscedastic Student-t (difference from sd 1)", "", header]
    for p in PRIORS[1:]:
        label = f"prior sd {p:g}"
        lines.append(f"| {label} | " + " | ".join(
            _difference(results[n][label], results[n]["prior sd 1"]) for n in names) + " |")
    return "\n".join(lines)


def settings_table(results: dict[str, dict[str, dict[str, list[float]]]],
                   settings: list[str]) -> str:
    """Validation LL, then RMSE: the first setting's means and the others' paired
    differences from it (for the RMSE as a ratio of the means)."""
    names = list(results)
    first = settings[0]
    lines = []
    for kind in ("LL", "RMSE"):
        lines += ["| setting | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
        lines.append(f"| {first or 'defaults'} (validation {kind}) | " + " | ".join(
            f"{np.mean(results[n][kind][first]):.3f}" for n in names) + " |")
        for setting in settings[1:]:
            cells = (
                _difference(results[n][kind][setting], results[n][kind][first]) if kind == "LL"
                else f"{np.mean(results[n][kind][setting]) / np.mean(results[n][kind][first]):.2f}x"
                for n in names)
            lines.append(f"| {setting or 'defaults'} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", metavar="DATASET")
    parser.add_argument("--data", type=Path, default=uci.DATA, help="the uci data folder")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--settings", nargs="+", default=None,
                        help='BNNRegressor keyword settings, e.g. "method=ivon"; "" = defaults')
    parser.add_argument("--splits", type=int, default=None,
                        help="with --settings: the first K splits of each data set (default: "
                             "SPLITS, 3 to 5; at most 20)")
    args = parser.parse_args(argv)
    if args.splits is not None and (not 2 <= args.splits <= 20 or not args.settings):
        parser.error(f"--splits must be 2 to 20 (a standard error needs two) and goes with "
                     f"--settings, got {args.splits}")
    names = args.datasets or list(uci.DATASETS)
    unknown = sorted(set(names) - set(uci.DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {', '.join(uci.DATASETS)}")
    if not args.data.is_dir():
        print(f"no UCI data at {args.data}", file=sys.stderr)
        return 2
    begin = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        if args.settings:
            futures = {n: pool.submit(settings_scores, n, args.data, args.settings,
                                      args.splits or SPLITS[n])
                       for n in names}
        else:
            futures = {n: pool.submit(validation_logliks, n, args.data) for n in names}
        results = {n: futures[n].result() for n in names}
    print(settings_table(results, args.settings) if args.settings else tables(results))
    print(f"\nwall time {time.perf_counter() - begin:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
