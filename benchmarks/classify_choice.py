"""The validation runs behind ``BNNClassifier``'s training length: training rows only.

For each data set of ``classify.py`` and each of its first ``--splits`` outer splits, the
outer training rows (never the test rows) are cut 80/20 (stratified, seed = the split's)
into fit and validation rows, standardised on the fit rows; each candidate setting fits the
fit rows and is scored on the validation rows (accuracy, NLL, ECE, fit seconds, steps),
next to ``MLPClassifier`` at its defaults. Means over the splits.

    python benchmarks/classify_choice.py --settings "n_epochs=50" "n_epochs=100,batch_size=256"
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from classify import (
    DATASETS,
    HIDDEN,
    TEST_SIZE,
    expected_calibration_error,
    negative_log_likelihood,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import noisybayes as nb


def parse_setting(text: str) -> dict[str, object]:
    """``"n_epochs=50,batch_size=256"`` as keyword arguments (numbers parsed, ``50/50`` a
    tuple of integers; ``""``: none)."""
    out: dict[str, object] = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        if "/" in value:
            out[key] = tuple(int(v) for v in value.split("/"))
            continue
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=[""],
                        help='BNNClassifier keyword settings, e.g. "n_epochs=50"; "" = defaults')
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--splits", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)  # scikit-learn's BLAS on one thread too
    print("| data set | setting | val accuracy | val NLL | val ECE | fit s | steps |")
    print("|---|---|---|---|---|---|---|")
    for dataset in args.datasets.split(","):
        x, y = DATASETS[dataset]()
        y = np.unique(y, return_inverse=True)[1]
        rows: dict[str, list[tuple[float, ...]]] = {}
        for k in range(args.splits):
            train, _ = next(StratifiedShuffleSplit(1, test_size=TEST_SIZE, random_state=k)
                            .split(x, y))
            fit, val = train_test_split(train, test_size=0.2, stratify=y[train], random_state=k)
            scaler = StandardScaler().fit(x[fit])
            x_fit, x_val = scaler.transform(x[fit]), scaler.transform(x[val])
            for name in ["mlp", *args.settings]:
                model = (MLPClassifier(hidden_layer_sizes=(HIDDEN,), random_state=k)
                         if name == "mlp" else
                         nb.BNNClassifier(**{"hidden": (HIDDEN,), "seed": k, **parse_setting(name)}))
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(x_fit, y[fit])  # type: ignore[attr-defined]
                seconds = time.perf_counter() - start
                probs = model.predict_proba(x_val)  # type: ignore[attr-defined]
                steps = getattr(getattr(model, "info_", None), "n_steps", 0) or getattr(
                    model, "n_iter_", 0)
                rows.setdefault(name, []).append((
                    float((probs.argmax(1) == y[val]).mean()),
                    negative_log_likelihood(probs, y[val]),
                    expected_calibration_error(probs, y[val]), seconds, float(steps)))
        for name, values in rows.items():
            acc, nll, ece, sec, steps = np.mean(values, axis=0)
            print(f"| {dataset} | {name or 'defaults'} | {acc:.3f} | {nll:.3f} | {ece:.3f} | "
                  f"{sec:.2f} | {steps:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
