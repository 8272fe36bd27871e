"""The linear estimators fitted from a data source (``reg.fit(nb.data.Parquet(...))``) against
the same estimators fitted in memory on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.base import clone

import noisybayes as nb
from noisybayes.engine.source import TensorSource
from noisybayes.estimators._base import Standardisation
from noisybayes.estimators._identifiability import design_rank, gram_rank
from noisybayes.estimators._streamed import ColumnMoments
from noisybayes.math.conjugate import (
    normal_inverse_gamma_from_sums,
    normal_inverse_gamma_posterior,
)

N_ROWS = 3000
COLUMNS = ["a", "b", "c"]


def _frame(n: int = N_ROWS) -> pd.DataFrame:
    """Uncentred columns of very different scales, two of them correlated (0.7), so that the
    standardisation matters; a continuous response, counts and labels."""
    rng = np.random.default_rng(0)
    a = rng.normal(1000.0, 50.0, n)
    b = 0.02 * a + rng.normal(0.0, 1.0, n)
    c = rng.normal(-3.0, 0.1, n)
    frame = pd.DataFrame({"a": a, "b": b, "c": c})
    eta = 0.01 * (a - 1000.0) - 0.5 * (b - 20.0) + 4.0 * (c + 3.0)
    frame["y"] = 5.0 + 0.1 * a - 2.0 * b + 10.0 * c + rng.normal(0.0, 3.0, n)
    frame["count"] = rng.poisson(np.exp(1.0 + 0.5 * eta)).astype(float)
    frame["label"] = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The rows as Parquet (row groups of 500) and as CSV."""
    folder = tmp_path_factory.mktemp("rows")
    frame = _frame()
    pq.write_table(pa.Table.from_pandas(frame), folder / "rows.parquet", row_group_size=500)
    frame.to_csv(folder / "rows.csv", index=False)
    return frame, folder


def _parquet(folder, y: str = "y", x=COLUMNS):
    return nb.data.Parquet(folder / "rows.parquet", x=list(x), y=y, buffer_rows=1024)


EXACT_CASES = [
    {"prior_scale": None, "noise_prior": None},  # Normal-Inverse-Gamma limit
    {"noise_scale": 3.0},  # known noise, the "auto" Normal prior
    {"noise_scale": 3.0, "prior_scale": None, "fit_intercept": False},
]


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
@pytest.mark.parametrize("arguments", EXACT_CASES)
def test_the_exact_posterior_from_a_source_is_the_in_memory_one(files, file_format, arguments):
    """Both solve the same equations, from sums of the same rows in float64, summed in another
    order: they differ by rounding, ~1e-13 of a posterior sd on 3,000 standardised rows;
    1e-10 leaves a thousandfold margin and catches any float32 step (~1e-7)."""
    frame, folder = files
    source = (_parquet(folder) if file_format == "parquet" else
              nb.data.CSV(folder / "rows.csv", x=COLUMNS, y="y", buffer_rows=1024))
    in_memory = nb.BayesianLinearRegression(method="exact", **arguments)
    in_memory.fit(frame[COLUMNS], frame["y"])
    streamed = nb.BayesianLinearRegression(method="exact", **arguments).fit(source)
    for name, sd in in_memory.posterior_.sd.items():
        gap = (streamed.posterior_.mean[name] - in_memory.posterior_.mean[name]) / sd
        assert gap.abs().max() < 1e-10, (name, gap)
        assert (streamed.posterior_.sd[name] / sd - 1).abs().max() < 1e-10
    assert streamed.posterior_.data is None and streamed.posterior_.info.n_data == N_ROWS
    assert list(streamed.feature_names_in_) == COLUMNS and streamed.n_features_in_ == 3
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-10)
    rows = frame[COLUMNS].iloc[:5]
    np.testing.assert_allclose(streamed.predict(rows), in_memory.predict(rows), rtol=1e-10)


def _agreement(streamed, in_memory) -> tuple[float, float]:
    """The largest gap of the posterior means in in-memory sds, and of the sds' ratios to 1."""
    gaps, ratios = [], []
    for name, sd in in_memory.posterior_.sd.items():
        gaps.append(((streamed.posterior_.mean[name] - in_memory.posterior_.mean[name]) / sd)
                    .abs().max())
        ratios.append((streamed.posterior_.sd[name] / sd - 1).abs().max())
    return float(max(gaps)), float(max(ratios))


STREAMED = {"batch_size": 500, "max_curvature_rows": 1000}  # fewer rows than the source's


@pytest.mark.parametrize("estimator", [
    nb.BayesianLinearRegression(progress=False, fit_options=STREAMED),
    nb.BayesianGLMClassifier(progress=False, fit_options=STREAMED),
    nb.BayesianGLM("poisson", progress=False, fit_options=STREAMED),
])
def test_a_vi_fit_from_a_source_agrees_with_the_in_memory_fit(files, estimator):
    """Tolerances (as tests/test_streamed_fit.py derives them): from the source, nb.fit
    takes Adam steps on minibatches of 500 rows; in whitened units (posterior sds) its
    averaged iterates have a standard error of at most 0.035 sd, so 0.1 sd is a 3-sigma bound,
    and relative sd errors are bounded by 5%. The in-memory fit (fixed-draw L-BFGS) is within
    0.02 sd of the same optimum by its own tolerance, so the two agree within 0.12 sd in means
    and 7% in sds."""
    frame, folder = files
    y = {"BayesianGLMClassifier": "label", "BayesianGLM": "count"}.get(
        type(estimator).__name__, "y")
    streamed = clone(estimator).fit(_parquet(folder, y=y))
    in_memory = clone(estimator).set_params(fit_options=None).fit(frame[COLUMNS], frame[y])
    assert streamed.posterior_.info.solver == "adam" and streamed.posterior_.info.converged
    assert "x is a data source" in streamed.posterior_.info.reason
    mean_gap, sd_gap = _agreement(streamed, in_memory)
    assert mean_gap < 0.12 and sd_gap < 0.07, (mean_gap, sd_gap)
    rows = frame[COLUMNS].iloc[:100]
    if y == "label":
        assert list(streamed.classes_) == [0.0, 1.0]
        assert (streamed.predict(rows) == in_memory.predict(rows)).mean() > 0.95


def test_a_source_no_larger_than_the_curvature_subsample_is_fitted_as_rows_in_memory(files):
    """3,000 rows against ``max_curvature_rows=50,000``: the one pass that reads the subsample
    reads every row, so the fit is the in-memory one (the fixed-draw solve, k-hat at those
    rows) rather than minibatch steps. The two fits' draws differ (the pass takes its row
    order from the seed): in-memory fits from six seeds differ by at most 8e-4 posterior sd in
    means and 1.6e-3 in relative sds (the fixed-draw solve's own bound, 0.02, is far looser),
    so 0.01 is a sixfold margin, and dropping 5% of the rows (sds 3% wider) fails it; the
    classes keep the integer column's type, as in memory."""
    frame, folder = files
    frame = frame.assign(label=frame["label"].astype(int))
    pq.write_table(pa.Table.from_pandas(frame), folder / "int_labels.parquet")
    source = nb.data.Parquet(folder / "int_labels.parquet", x=COLUMNS, y="label")
    read = nb.BayesianGLMClassifier(progress=False).fit(source)
    in_memory = nb.BayesianGLMClassifier(progress=False).fit(frame[COLUMNS], frame["label"])
    info = read.posterior_.info
    assert info.solver == "lbfgs" and "3000 rows, at most max_curvature_rows" in info.reason
    mean_gap, sd_gap = _agreement(read, in_memory)
    assert mean_gap < 0.01 and sd_gap < 0.01, (mean_gap, sd_gap)
    assert read.classes_.dtype == in_memory.classes_.dtype and list(read.classes_) == [0, 1]
    assert read.posterior_.info.khat < 0.7  # from the rows read whole
    assert read.posterior_.data is None  # their order is the pass's: check() asks for rows
    with pytest.raises(ValueError, match=r"^to_arviz\(\) needs X and y here: fitted from a "
                                         r"data source, the posterior keeps no rows$"):
        read.to_arviz()
    rows = frame.iloc[:50]
    exported = read.to_arviz(rows[COLUMNS], rows["label"], n_draws=20)
    np.testing.assert_array_equal(exported.observed_data["y"].values, rows["label"].values)


def test_column_moments_merged_by_chunks_are_those_of_all_rows():
    """Chan, Golub & LeVeque's update against the two-pass formula, on unit-variance columns
    offset by 1e6. Each chunk's mean carries rounding of ``1e6 eps = 2e-10``, which the
    update's ``n |delta|``-sized terms carry into the sums at about 1e-9, against a diagonal
    of 1000: 1e-7 absolute is 1e-10 of it. (The one-pass ``sum z z^T - n m m^T`` would be
    off by ``n eps 1e12 = 200``, everything.)"""
    rows = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64) + 1e6
    merged = ColumnMoments.of(rows[:10])
    for chunk in rows[10:].split(137):
        merged = merged.merged(ColumnMoments.of(chunk))
    whole = ColumnMoments.of(rows)
    assert merged.n_data == 1000
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-15, atol=0)
    torch.testing.assert_close(merged.scatter, whole.scatter, rtol=0, atol=1e-7)
    X, y = rows[:, :2], rows[:, 2]
    for centre in (True, False):
        expected = Standardisation.of(X, y, centre=centre, continuous=True)
        got = Standardisation.of_moments(merged.mean, merged.sd, centre=centre, continuous=True)
        torch.testing.assert_close(got.x_mean, expected.x_mean, rtol=1e-15, atol=0)
        # the sds: rounding of ~2e-10 in 1 from the centring, on either side
        torch.testing.assert_close(got.x_scale, expected.x_scale, rtol=1e-9, atol=0)
        assert got.y_scale == pytest.approx(expected.y_scale, rel=1e-9)


def test_the_gram_rank_is_the_design_rank_on_exactly_dependent_columns():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=generator, dtype=torch.float64)
    dependent = torch.cat([x, x[:, :1], x[:, 1:2] + 2 * x[:, 2:3]], 1)
    for columns in (x, dependent):
        design = torch.cat([torch.ones(500, 1, dtype=torch.float64), columns], 1)
        assert gram_rank(design.T @ design, 500) == design_rank(columns, True)
    assert gram_rank(torch.zeros(2, 2, dtype=torch.float64), 10) == 0


def test_the_normal_inverse_gamma_posterior_from_sums_is_the_one_from_rows():
    generator = torch.Generator().manual_seed(2)
    X = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + torch.randn(
        50, generator=generator, dtype=torch.float64)
    rows = normal_inverse_gamma_posterior(X, y, a0=-2.0)
    sums = normal_inverse_gamma_from_sums(X.T @ X, X.T @ y, y @ y, 50, a0=-2.0)
    for name in ("loc", "precision", "a", "b"):
        torch.testing.assert_close(getattr(sums, name), getattr(rows, name), rtol=1e-12,
                                   atol=1e-12)
    with pytest.raises(ValueError, match=r"n_data must be more than 3\.0 rows .* got 3"):
        normal_inverse_gamma_from_sums(X.T @ X, X.T @ y, y @ y, 3, a0=-1.5)


def test_bad_sources_are_refused_naming_the_argument(files, tmp_path):
    frame, folder = files
    source = _parquet(folder)
    with pytest.raises(ValueError, match=r"y must be None when X is a data source, which "
                                         r"yields the response \(column 'y'\), got Series"):
        nb.BayesianLinearRegression().fit(source, frame["y"])
    with pytest.raises(ValueError, match="X must be a whole data source, got a shard of 1500"):
        nb.BayesianLinearRegression().fit(source.shard(0, 2))
    two_inputs = nb.data.Parquet(folder / "rows.parquet", x=(["a"], ["b", "c"]), y="y")
    with pytest.raises(ValueError, match=r"X must be a data source yielding one input, a "
                                         r"matrix \(B, d\).*shapes \[\(3000, 1\), \(3000, 2\)\]"):
        nb.BayesianLinearRegression(method="exact", noise_scale=1.0).fit(two_inputs)
    with pytest.raises(TypeError, match="fit_intercept must be True or False, got 'yes'"):
        nb.BayesianLinearRegression(fit_intercept="yes").fit(source)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be 'vi' for the Student-t likelihood"):
        nb.StudentTLinearRegression(method="exact").fit(source)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"y must be a non-negative integer count for "
                                         r"family='poisson', got 3000 rows outside, e\.g\. "):
        nb.BayesianGLM("poisson").fit(source)
    with pytest.raises(ValueError, match=r"y must hold 2 classes, got \[.*, '\.\.\.'\]"):
        nb.BayesianGLMClassifier().fit(source)
    with pytest.raises(ValueError, match=r"prior_scale=None .* family='bernoulli' needs a "
                                         r"check for separation over all rows at once"):
        nb.BayesianGLMClassifier(prior_scale=None).fit(_parquet(folder, y="label"))
    fitted = nb.BayesianLinearRegression(method="exact", noise_scale=3.0).fit(source)
    with pytest.raises(ValueError, match="feature names should match"):
        fitted.predict(frame[["a", "b", "count"]])
    with pytest.raises(ValueError, match="X has 2 features, but BayesianLinearRegression is "
                                         "expecting 3 features"), \
            pytest.warns(UserWarning, match="X does not have valid feature names"):
        fitted.predict(frame[COLUMNS].to_numpy()[:, :2])


def test_unidentified_data_from_a_source_are_refused_as_in_memory(tmp_path):
    """The identifiability checks read the ranks off the Gram matrices of one pass."""
    frame = _frame(200)
    frame["twice_a"] = 2.0 * frame["a"]
    frame["exact"] = 1.0 + 2.0 * frame["a"] - frame["b"]
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "rows.parquet", row_group_size=64)
    collinear = nb.data.Parquet(tmp_path / "rows.parquet", x=["a", "twice_a"], y="y")
    flat = nb.BayesianLinearRegression(prior_scale=None, method="exact", noise_scale=1.0)
    with pytest.raises(ValueError, match=r"prior_scale=None .* got a design of rank 2 for 3 "
                                         r"columns \(intercept included\) and 200 rows"):
        flat.fit(collinear)
    exact = nb.data.Parquet(tmp_path / "rows.parquet", x=["a", "b"], y="exact")
    with pytest.raises(ValueError, match="y must not be an exact linear function of X for a "
                                         "learned noise scale, got a residual of 0 with 197"):
        nb.BayesianLinearRegression().fit(exact)


def test_an_engine_source_of_tensors_fits_as_its_rows():
    """Any ``DataSource`` will do: an in-memory ``TensorSource`` has no column names."""
    frame = _frame(400)
    X = torch.tensor(frame[COLUMNS].to_numpy())
    y = torch.tensor(frame["y"].to_numpy())
    arguments = {"method": "exact", "noise_scale": 3.0}
    streamed = nb.BayesianLinearRegression(**arguments).fit(TensorSource((X,), y))
    in_memory = nb.BayesianLinearRegression(**arguments).fit(X, y)
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-10)
    assert not hasattr(streamed, "feature_names_in_")


def test_an_exact_fit_from_a_float32_source_keeps_the_noise_scale(tmp_path):
    """100,000 float32 rows that X explains to R^2 ~ 0.99999: the noise term y^T y - m^T mu
    of the sums keeps its digits because the exact posterior is solved in float64; the noise
    scale equals the in-memory float32 fit's (solved from the rows) to 1e-5 relative (solved
    in float32 it was 0.6% off)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100_000, 3)).astype(np.float32)
    y = (X @ np.array([1.0, 2.0, 3.0], dtype=np.float32)
         + 0.01 * rng.normal(size=100_000)).astype(np.float32)
    path = tmp_path / "float32.parquet"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}).to_parquet(path)
    flat = {"method": "exact", "prior_scale": None, "noise_prior": None}
    streamed = nb.BayesianLinearRegression(**flat).fit(nb.data.Parquet(path, x=COLUMNS, y="y"))
    in_memory = nb.BayesianLinearRegression(**flat).fit(X, y)
    assert streamed.noise_scale_ == pytest.approx(in_memory.noise_scale_, rel=1e-5)
