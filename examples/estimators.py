"""The scikit-learn style estimators on two bundled data sets, with held-out calibration.

``nb.BayesianLinearRegression`` on the diabetes data (442 patients, 10 baseline variables,
disease progression a year later) and ``nb.BayesianGLMClassifier`` (logistic
regression) on the Wisconsin breast-cancer data (569 tumours, 30 features, malignant or
benign), both from scikit-learn. Each is fitted on three quarters of the rows; the script
prints the posterior table and how well the posterior predictive covers the held-out
quarter (``nb.calibration``): interval coverage close to the nominal levels for the
regression, predicted probabilities close to observed frequencies for the classifier.

    python examples/estimators.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

import noisybayes as nb


def split(
    X: pd.DataFrame, y: pd.Series, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """A random three-quarters / one-quarter split of the rows."""
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[: 3 * len(y) // 4], order[3 * len(y) // 4 :]
    return X.iloc[train], X.iloc[test], y.iloc[train], y.iloc[test]


def show_coverage(report: nb.CalibrationReport) -> None:
    """Central predictive intervals against the held-out rows they cover."""
    for level, coverage in zip(report.levels, report.coverage, strict=True):
        print(f"  {level:.0%} predictive intervals cover {coverage:.0%} of held-out rows")


def show_reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = 5) -> None:
    """Predicted probability against the observed frequency, in bins of the prediction."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(probs, edges) - 1, 0, n_bins - 1)
    for b in range(n_bins):
        inside = which == b
        if inside.any():
            print(
                f"  predicted {edges[b]:.1f}-{edges[b + 1]:.1f}: {inside.sum():3d} rows, "
                f"mean prediction {probs[inside].mean():.2f}, observed {y[inside].mean():.2f}"
            )


def regression() -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_train, X_test, y_train, y_test = split(X, y, seed=0)
    reg = nb.BayesianLinearRegression(seed=0).fit(X_train, y_train)
    print("Bayesian linear regression, diabetes progression (posterior on the data's units)")
    print(reg.summary().round(2).to_string())
    mean, sd = reg.predict(X_test, return_std=True)
    rmse = float(np.sqrt(np.mean((np.asarray(y_test) - mean) ** 2)))
    print(f"held-out RMSE {rmse:.1f}, mean predictive sd {float(np.mean(sd)):.1f}")
    report = nb.calibration(reg.predictive_draws(X_test, y_test), y_test)
    show_coverage(report)
    print(f"  mean log predictive density {report.mean_log_density:.3f}")


def classification() -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = split(X, y.astype(float), seed=0)
    clf = nb.BayesianGLMClassifier(seed=0).fit(X_train, y_train)
    print("Bayesian logistic regression, breast cancer (1 = benign)")
    print(clf.summary().round(2).head(8).to_string())
    print(f"... {len(clf.summary())} rows in all")
    probs, labels = clf.predict_proba(X_test)[:, 1], np.asarray(y_test)
    print(f"held-out accuracy {np.mean((probs > 0.5) == (labels == 1)):.1%}")
    report = nb.calibration(clf.predictive_draws(X_test, y_test), y_test)
    print(
        f"  mean log predictive density {report.mean_log_density:.3f}, "
        f"Brier score (the CRPS of a 0/1 outcome) {report.mean_crps:.3f}"
    )
    show_reliability(probs, labels)


def main() -> None:
    regression()
    print()
    classification()


if __name__ == "__main__":
    main()
