"""``BayesianGLM``: a grid-exact posterior, frequentist coverage, equivalences and every error."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

import noisybayes as nb
from noisybayes.estimators._base import Standardisation
from noisybayes.math.intervals import equal_tailed

Z_90 = 1.6448536269514722  # the 95% standard normal quantile: 90% central intervals


def _logistic_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=1.0, size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 1.2 * x)))).astype(float)
    return x, y


def _grid_posterior(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and sds of ``p(a, b | y) ∝ prod_i Bernoulli(y_i; sigmoid(a + b x_i))`` (flat
    priors) by summing the density over a 401 x 401 grid spanning the mode ± 8 Laplace sds."""
    theta = np.zeros(2)
    design = np.column_stack([np.ones_like(x), x])
    for _ in range(50):  # Newton's method for the mode
        p = 1 / (1 + np.exp(-design @ theta))
        hessian = design.T @ (design * (p * (1 - p))[:, None])
        theta = theta + np.linalg.solve(hessian, design.T @ (y - p))
    sd = np.sqrt(np.diag(np.linalg.inv(hessian)))
    a = theta[0] + np.linspace(-8, 8, 401) * sd[0]
    b = theta[1] + np.linspace(-8, 8, 401) * sd[1]
    eta = a[:, None, None] + b[None, :, None] * x[None, None, :]
    log_lik = (y * eta - np.logaddexp(0.0, eta)).sum(-1)
    weight = np.exp(log_lik - log_lik.max())
    weight /= weight.sum()
    pa, pb = weight.sum(1), weight.sum(0)
    means = np.array([pa @ a, pb @ b])
    sds = np.sqrt(np.array([pa @ (a - means[0]) ** 2, pb @ (b - means[1]) ** 2]))
    return means, sds


def test_logistic_regression_matches_a_grid_posterior():
    """Two parameters, flat priors: the exact posterior by a fine grid, as the reference."""
    x, y = _logistic_data(150, seed=0)
    means, sds = _grid_posterior(x, y)
    clf = nb.BayesianGLMClassifier(prior_scale=None).fit(x[:, None], y)
    table = clf.summary()
    ours = table.loc[["intercept", "coef[0]"]]
    z = (ours["mean"].to_numpy() - means) / sds
    assert np.abs(z).max() < 0.1, z
    assert np.abs(ours["sd"].to_numpy() / sds - 1).max() < 0.1, ours["sd"].to_numpy() / sds
    assert clf.link_ == "logit" and list(clf.classes_) == [0.0, 1.0]
    prob = clf.predict_proba(np.array([[-1.0], [1.0], [3.0]]))[:, 1]
    assert bool(((prob > 0) & (prob < 1)).all()) and bool((np.diff(prob) > 0).all())


def _coverage(family: str, n_sims: int, n: int = 150) -> tuple[int, int]:
    """How many of the 90% intervals of ``(intercept, coef)`` cover the truth over
    ``n_sims`` simulated data sets, and how many intervals there were."""
    truth = {"bernoulli": (-0.3, [0.8, -0.4]), "poisson": (0.5, [0.3, -0.2])}[family]
    covered = 0
    for sim in range(n_sims):
        rng = np.random.default_rng(100 + sim)
        X = rng.normal(size=(n, 2)) * [1.0, 2.0] + [0.5, -1.0]
        eta = truth[0] + X @ np.array(truth[1])
        if family == "bernoulli":
            y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
        else:
            y = rng.poisson(np.exp(eta)).astype(float)
        glm = (
            nb.BayesianGLMClassifier(seed=sim) if family == "bernoulli"
            else nb.BayesianGLM(family, seed=sim)
        )
        fit = glm.fit(X, y)
        mean = np.array([fit.intercept_, *fit.coef_])
        sd = torch.cat([fit.posterior_.sd["intercept"].reshape(1),
                        fit.posterior_.sd["coef"]]).numpy()
        true = np.array([truth[0], *truth[1]])
        covered += int((np.abs(mean - true) <= Z_90 * sd).sum())
    return covered, 3 * n_sims


def _assert_nominal(covered: int, total: int) -> None:
    """Within 3 binomial sds of 0.9 (intervals of one data set are correlated, so this is
    a little generous for them and strict enough to catch intervals off by 30%)."""
    binomial_sd = math.sqrt(0.9 * 0.1 / total)
    assert abs(covered / total - 0.9) < 3 * binomial_sd, (covered, total)


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_90_percent_intervals_cover_the_truth_quick(family):
    _assert_nominal(*_coverage(family, n_sims=2))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_90_percent_intervals_cover_the_truth(family):
    """40 data sets x 3 coefficients (measured: bernoulli 111/120 = 0.925, poisson 108/120
    = 0.900; the bound is 0.9 ± 0.082)."""
    _assert_nominal(*_coverage(family, n_sims=40))


def test_gaussian_glm_is_the_linear_regression():
    """Same model, priors, parameter order and seed: the same posterior."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 2)) * [1.0, 10.0] + [0.0, 50.0]
    y = 3.0 + X @ [1.5, -0.2] + rng.normal(scale=2.0, size=80)
    glm = nb.BayesianGLM("gaussian", fit_options={"max_steps": 300}).fit(X, y)
    linear = nb.BayesianLinearRegression(fit_options={"max_steps": 300}).fit(X, y)
    pd.testing.assert_frame_equal(glm.summary(), linear.summary())
    torch.testing.assert_close(
        torch.as_tensor(glm.predict(X[:5])), torch.as_tensor(linear.predict(X[:5]))
    )
    assert float(glm.dispersion_) == pytest.approx(float(linear.noise_scale_))


def test_student_t_regression_is_the_student_t_glm():
    """The robust regression is the student_t preset: same priors and seed, same numbers."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 2)) * [1.0, 10.0] + [0.0, 50.0]
    y = 3.0 + X @ [1.5, -0.2] + rng.standard_t(4, size=80)
    df_prior = torch.distributions.Gamma(torch.tensor(3.0, dtype=torch.float64),
                                         torch.tensor(0.2, dtype=torch.float64))
    glm = nb.BayesianGLM("student_t", df_prior=df_prior, fit_options={"max_steps": 300}).fit(X, y)
    robust = nb.StudentTLinearRegression(df_prior=df_prior, fit_options={"max_steps": 300})
    robust.fit(X, y)
    pd.testing.assert_frame_equal(glm.summary(), robust.summary())
    assert list(robust.summary().index) == ["intercept", "coef[0]", "coef[1]", "sigma", "df"]
    torch.testing.assert_close(
        torch.as_tensor(glm.predict(X[:5])), torch.as_tensor(robust.predict(X[:5]))
    )


def test_one_standardisation_for_every_response():
    """Columns and a continuous response: population mean and sd (sd 0 becomes 1); a count
    or label response is modelled as it is."""
    X = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], dtype=torch.float64)
    y = torch.tensor([2.0, 4.0, 9.0], dtype=torch.float64)
    scaling = Standardisation.of(X, y, centre=True, continuous=True)
    torch.testing.assert_close(scaling.x_mean, torch.tensor([3.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(
        scaling.x_scale, torch.tensor([math.sqrt(8 / 3), 1.0], dtype=torch.float64)
    )
    assert scaling.y_mean == pytest.approx(5.0)
    assert scaling.y_scale == pytest.approx(math.sqrt(26 / 3))
    uncentred = Standardisation.of(X, y, centre=False, continuous=True)
    assert float(uncentred.x_mean.abs().sum()) == 0.0 and uncentred.y_mean == 0.0
    counts = Standardisation.of(X, y, centre=True, continuous=False)
    assert (counts.y_mean, counts.y_scale) == (0.0, 1.0)


def test_predictions_are_the_model_predictions_mapped_back():
    """``predict_distribution`` is the posterior's prediction on the standardised scale,
    moved by ``Prediction.affine(y_mean, y_scale)``."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 2)) * [1.0, 10.0] + [0.0, 50.0]
    y = 30.0 + X @ [1.5, -0.2] + rng.normal(scale=2.0, size=60)
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    reg.fit(X, y)
    model = reg.posterior_.model
    x_std = model.standardise_x(torch.tensor(X[:4]))
    raw = reg.posterior_.predict(x_std, n_samples=500, seed=reg.seed)
    expected = raw.affine(model.y_mean, model.y_scale)
    ours = reg.predict_distribution(X[:4], n_samples=500)
    for field in dataclasses.fields(expected):
        value = getattr(expected, field.name)
        if value is not None:
            torch.testing.assert_close(getattr(ours, field.name), value, rtol=0, atol=0)


def test_count_families_and_formula():
    rng = np.random.default_rng(5)
    table = pd.DataFrame({"x": rng.normal(size=200), "g": rng.choice(["a", "b"], size=200)})
    mu = np.exp(0.3 + 0.6 * table["x"] + 0.5 * (table["g"] == "b"))
    table["counts"] = rng.negative_binomial(4.0, 4.0 / (4.0 + mu))
    nbin = nb.BayesianGLM.from_formula("counts ~ x + C(g)", table, family="negative_binomial")
    summary = nbin.summary()
    assert list(summary.index) == ["intercept", "x", "C(g)[T.b]", "concentration"]
    for name, true in [("intercept", 0.3), ("x", 0.6), ("C(g)[T.b]", 0.5)]:
        assert abs(summary.loc[name, "mean"] - true) < 4 * summary.loc[name, "sd"], name
    assert summary.loc["concentration", "mean"] > 1.5  # overdispersion seen (truth: 4)
    mean, sd = nbin.predict(table.iloc[:4], return_std=True)
    assert bool((mean > 0).all()) and bool((sd**2 > mean).all())  # Var = mu + mu^2 / phi
    pred = nbin.predict_distribution(table.iloc[:4], level=0.9, n_samples=20)  # few: no ties
    assert pred.level == 0.9 and bool((pred.lower <= pred.upper).all())
    assert bool((pred.lower == pred.lower.round()).all())  # counts
    assert bool((pred.upper == pred.upper.round()).all())


def test_a_count_interval_is_bounded_by_counts_and_holds_at_least_its_level():
    """Equal-tailed intervals of whole-number draws take the draws next outside the
    quantiles: for the counts 0..9 the 90% interval is [0, 9], where interpolation gave
    [0.45, 8.55] (and an upper bound of 2.05 drops the count 3); on 20 Poisson(2.3) draws
    (few enough that the quantiles fall between different counts) the bounds are counts and
    each interval holds at least 90% of its draws."""
    lower, upper = equal_tailed(torch.arange(10.0)[:, None], 0.9)
    assert (lower.item(), upper.item()) == (0.0, 9.0)
    draws = torch.poisson(torch.full((20, 50), 2.3), generator=torch.Generator().manual_seed(0))
    lower, upper = equal_tailed(draws, 0.9)
    assert torch.equal(lower, lower.round()) and torch.equal(upper, upper.round())
    assert bool((((draws >= lower) & (draws <= upper)).double().mean(0) >= 0.9).all())
    # outside the quantiles, not merely near them (the nearest draw passes the lines above)
    assert bool((lower <= torch.quantile(draws, 0.05, dim=0)).all())
    assert bool((upper >= torch.quantile(draws, 0.95, dim=0)).all())
    jitter = torch.rand(10, 1, generator=torch.Generator().manual_seed(1))
    continuous = torch.arange(10.0)[:, None] + 0.5 * jitter  # as before: interpolated
    assert equal_tailed(continuous, 0.9)[0].item() == torch.quantile(continuous, 0.05).item()
    large = (3e7 + 1e4 * jitter).float()  # float32 from 2^24 on holds whole numbers only
    assert equal_tailed(large, 0.9)[1].item() == torch.quantile(large, 0.95).item()


def test_the_classifier_formula_takes_labels_as_they_are():
    """A classifier's formula response is one column of labels: booleans, strings and 0/1
    integers give the same fit, ``classes_`` and predictions in the column's own type; a
    transformed response is refused, naming it."""
    rng = np.random.default_rng(6)
    table = pd.DataFrame({"a": rng.normal(size=150), "b": rng.normal(size=150)})
    table["flag"] = table["a"] - table["b"] + rng.normal(size=150) > 0
    table["label"] = np.where(table["flag"], "yes", "no")
    table["code"] = table["flag"].astype(int)
    fits = {column: nb.BayesianGLMClassifier.from_formula(
        f"{column} ~ a + b", table, approximation="fullrank", fit_options={"max_steps": 300})
        for column in ("flag", "label", "code")}
    for column, classes in (("flag", [False, True]), ("label", ["no", "yes"]), ("code", [0, 1])):
        fit = fits[column]
        assert list(fit.classes_) == classes
        if column != "flag":
            np.testing.assert_array_equal(fit.coef_, fits["flag"].coef_)
        assert set(fit.predict(table.head(20))) <= set(classes)
    assert fits["flag"].classes_.dtype == bool and fits["code"].classes_.dtype.kind == "i"
    with pytest.raises(ValueError, match=r"^formula must have one column of class labels as its "
                       r"response, got 'np.log1p\(code\)' in 'np.log1p\(code\) ~ a'$"):
        nb.BayesianGLMClassifier.from_formula("np.log1p(code) ~ a", table)
    quoted = nb.BayesianGLMClassifier.from_formula(
        'Q("label") ~ a + b', table, approximation="fullrank", fit_options={"max_steps": 300})
    np.testing.assert_array_equal(quoted.coef_, fits["label"].coef_)


def test_student_t_and_probit_and_log_link_fit():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(120, 1))
    y_t = 1.0 + 2.0 * X[:, 0] + rng.standard_t(3, size=120)
    robust = nb.BayesianGLM("student_t").fit(X, y_t)
    assert abs(float(robust.coef_[0]) - 2.0) < 4 * float(robust.posterior_.sd["coef"][0])
    assert float(robust.posterior_.mean["df"]) > 2
    mean, sd = robust.predict(X[:3], return_std=True)
    assert bool(np.isfinite(sd).all())
    labels = (X[:, 0] + rng.normal(size=120) > 0).astype(float)
    probit = nb.BayesianGLMClassifier(link="probit").fit(X, labels)
    assert abs(float(probit.coef_[0]) - 1 / math.sqrt(1.0)) < 4 * float(
        probit.posterior_.sd["coef"][0])  # P(x + e > 0) = Phi(x): slope 1
    positive = np.exp(0.5 + 0.3 * X[:, 0]) + 0.1 * rng.normal(size=120)
    log_gauss = nb.BayesianGLM("gaussian", link="log").fit(X, positive)
    assert abs(float(log_gauss.coef_[0]) - 0.3) < 4 * float(log_gauss.posterior_.sd["coef"][0])


@pytest.mark.parametrize(
    ("family", "y", "message"),
    [
        ("poisson", [0, 1, -1, 2, 3], "y must be a non-negative integer count for "
         "family='poisson', got 1 rows outside, e.g. -1.0 at row 2"),
        ("negative_binomial", [0, 1.5, 2, 2.5, 3], "y must be a non-negative integer count "
         "for family='negative_binomial', got 2 rows outside, e.g. 1.5 at row 1"),
    ],
)
def test_responses_outside_the_support_are_refused(family, y, message):
    X = np.arange(5.0)[:, None]
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        nb.BayesianGLM(family).fit(X, y)


def test_argument_errors():
    X, y = np.arange(6.0)[:, None], np.array([0.0, 1, 0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"^family must be one of 'poisson', "
                       r"'negative_binomial', 'student_t', 'gaussian', got 'gamma'"):
        nb.BayesianGLM("gamma").fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^link must be one of 'logit', 'probit' for "
                       r"family='bernoulli', got 'log'"):
        nb.BayesianGLMClassifier(link="log").fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^link must be one of 'log' for family='poisson', "
                       r"got 'cloglog'"):
        nb.BayesianGLM("poisson", link="cloglog").fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^dispersion_prior must be a torch Distribution, "
                       r"'auto' or None, got 3.0"):
        nb.BayesianGLM("gaussian", dispersion_prior=3.0).fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^dispersion_prior must be one of 'auto', got 'wide'"):
        nb.BayesianGLM("gaussian", dispersion_prior="wide").fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^df_prior must be a torch Distribution or 'auto', "
                       r"got None"):
        nb.BayesianGLM("student_t", df_prior=None).fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^prior_scale must be > 0, got -1.0"):
        nb.BayesianGLMClassifier(prior_scale=-1.0).fit(X, y)
    with pytest.raises(NotFittedError, match=r"^This BayesianGLM instance is not fitted yet"):
        nb.BayesianGLM("poisson").predict(X)
    with pytest.raises(ValueError, match=r"^Found input variables with inconsistent numbers "
                       r"of samples: \[6, 5\]"):
        nb.BayesianGLM("poisson").fit(X, y[:5])
    assert "family='bernoulli'" in repr(nb.BayesianGLM("bernoulli"))
