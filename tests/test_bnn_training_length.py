"""The estimators' default training length (``n_epochs=None``), and the classification
benchmark's calibration error, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

import noisybayes as nb
from noisybayes.estimators.bnn import default_epochs
from tests.benchmark_scripts import load_benchmark


@pytest.mark.parametrize(
    ("n_rows", "batch", "min_epochs", "min_steps", "expected"),
    [
        (1257, 256, 50, 200, 50),  # digits' training rows: 5 steps a pass, 250 steps
        (398, 256, 50, 200, 100),  # breast cancer's: 2 steps a pass, 100 passes for 200 steps
        (100, 256, 50, 200, 200),  # one batch of all rows a pass
        (1000, 128, 40, 5000, 625),  # the regressor: 8 steps a pass
        (100_000, 128, 40, 5000, 40),  # 782 steps a pass: the passes decide
    ],
)
def test_default_epochs_is_the_larger_of_the_passes_and_the_steps(
    n_rows, batch, min_epochs, min_steps, expected
):
    assert default_epochs(n_rows, batch, min_epochs, min_steps) == expected


def test_classifier_trains_50_passes_of_256_rows_and_at_least_200_steps_by_default():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] > 0).astype(int)
    clf = nb.BNNClassifier(hidden=(4,), n_predict_samples=10)
    assert clf.get_params()["batch_size"] == 256
    assert nb.BNNRegressor().get_params()["batch_size"] == 128
    clf.fit(x, y)
    # 300 rows: 2 steps a pass (256 + 44 rows); 50 passes are 100 steps, so 100 passes
    assert (clf.info_.n_steps, clf.info_.n_epochs, clf.info_.batch_size) == (200, 100, 256)
    long = nb.BNNClassifier(hidden=(4,), batch_size=1000, n_predict_samples=10).fit(x, y)
    assert (long.info_.n_steps, long.info_.batch_size) == (200, 300)  # one batch a pass


def _benchmark():
    return load_benchmark("classify", "classify_benchmark")


def test_expected_calibration_error_by_hand():
    ece = _benchmark().expected_calibration_error
    # four rows at top probability 0.8 (bin 12 of 15), three of them right: |0.75 - 0.8|
    probs = np.array([[0.8, 0.2]] * 4)
    assert ece(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.05)
    # add two rows at 0.55 (bin 9), both wrong: (4 * 0.05 + 2 * 0.55) / 6
    probs = np.vstack([probs, [[0.45, 0.55]] * 2])
    assert ece(probs, np.array([0, 0, 0, 1, 0, 0])) == pytest.approx(1.3 / 6)
    # bins are closed on the right: 0.6 (= 9/15) shares (8/15, 9/15] with 0.58, not 0.61's
    edge = np.array([[0.6, 0.4], [0.42, 0.58]])
    assert ece(edge, np.array([0, 0])) == pytest.approx(abs(0.5 - 0.59))
    apart = np.array([[0.6, 0.4], [0.39, 0.61]])
    assert ece(apart, np.array([0, 0])) == pytest.approx((0.4 + 0.61) / 2)
    assert ece(np.array([[1.0, 0.0]]), np.array([0])) == 0.0  # the last bin holds 1


def test_negative_log_likelihood_floors_probabilities_like_log_loss():
    nll = _benchmark().negative_log_likelihood
    probs = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert nll(probs, np.array([1, 0])) == pytest.approx(-np.log(0.75) / 2)
    assert nll(probs, np.array([1, 1])) == pytest.approx((-np.log(0.75) - np.log(1e-15)) / 2)
