"""Group terms ``(x | g)`` in formulas: parsing, the design, the model's density, predictions
for seen and new groups, names, errors, three radon regressions against NUTS, and the
intercept alone as fixed part (``y ~ 1 + (1 | g)`` against its exact posterior; ``y ~ 1``
against closed forms)."""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import HalfNormal

import noisybayes as nb
from noisybayes.estimators._glm_model import GLMSpec, glm_model
from noisybayes.estimators._group_effects import group_inputs
from noisybayes.infer.objective import LogJoint
from noisybayes.model.layout import ParamLayout
from noisybayes.tables.formula import design_matrices
from noisybayes.tables.group_terms import NEW_GROUP, split_group_terms

F64 = torch.float64
RADON = Path(nb.__file__).parent / "data" / "radon.csv"
REFERENCE = Path(__file__).parent / "data" / "radon_nuts.json"


# --- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("formula", "fixed", "groups"),
    [
        ("y ~ x + (1 | g)", "y ~ x", [("1", "g")]),
        ("y ~ (1|g)", "y ~ 1", [("1", "g")]),
        ("y ~ x + (x | g) + (0 + x || h) - 1", "y ~ x - 1", [("x", "g"), ("0 + x", "h")]),
        ("y ~ np.log(x) + C(a) + (np.log(x) | g)", "y ~ np.log(x) + C(a)", [("np.log(x)", "g")]),
        ("y ~ x:z", "y ~ x:z", []),
    ],
)
def test_group_terms_are_split_from_the_fixed_terms(formula, fixed, groups):
    assert split_group_terms(formula) == (fixed, groups)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x + 1|g", "formula must write a group term in parentheses, (expr | group), got '1|g'"),
        ("y ~ x + (1|g:h)", "must name one grouping column after '|' (a plain column name), got 'g:h'"),
        ("y ~ x - (1|g)", "formula must add a group term, not subtract it, got '- (1|g)'"),
        ("y ~ x + ( | g)", "formula group term '( | g)' must have terms before '|'"),
    ],
)
def test_malformed_group_terms_are_errors_naming_the_term(formula, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        split_group_terms(formula)


# --- the design ------------------------------------------------------------------------------
def small_table() -> pd.DataFrame:
    return pd.DataFrame({
        "y": [1.0, 2.0, 0.5, 3.0, 2.5, 1.5],
        "x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "g": ["b", "a", "b", "c", "a", None],
    })


def test_the_design_holds_each_terms_levels_columns_and_rows():
    design = design_matrices("y ~ x + (x | g)", small_table())
    assert design.n_dropped == 1  # the row without a group
    term = design.spec.groups[0]
    assert term.levels == ("a", "b", "c") and term.columns == ("1", "x")
    assert term.labels == ("a", "b", "c", NEW_GROUP)
    rows = design.groups[0]
    np.testing.assert_array_equal(rows.index, [1, 0, 1, 2, 0])
    np.testing.assert_array_equal(rows.Z, [[1, 0], [1, 1], [1, 2], [1, 3], [1, 4]])
    new = design.spec.transform(pd.DataFrame({"x": [7.0, 8.0], "g": ["c", "zzz"]}))
    np.testing.assert_array_equal(new.groups[0].index, [2, 3])  # unseen: the new group's slot


def test_new_rows_must_hold_group_labels_of_the_fitted_kind():
    """Labels read as strings where the fit saw numbers would match no group at all."""
    design = design_matrices("y ~ x + (1 | g)", small_table().assign(g=[1, 2, 1, 3, 2, 1]))
    new = pd.DataFrame({"x": [1.0], "g": ["1"]})
    with pytest.raises(ValueError, match="grouping column 'g' must hold labels of the kind seen "
                                         "when fitting"):
        design.spec.transform(new)
    np.testing.assert_array_equal(
        design.spec.transform(new.assign(g=[2.0])).groups[0].index, [1])  # 2.0 is level 2


def test_a_grouping_column_must_exist_and_hold_labels():
    with pytest.raises(ValueError, match="got unknown column 'h'"):
        design_matrices("y ~ x + (1 | h)", small_table())
    table = small_table().assign(g=[0.5, 1.0, 1.0, 2.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="grouping column 'g' must hold labels"):
        design_matrices("y ~ x + (1 | g)", table)


# --- the model's density ---------------------------------------------------------------------
def normal_log_pdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - torch.log(torch.as_tensor(scale)) - 0.5 * math.log(
        2 * math.pi)


def test_the_log_joint_is_the_hand_written_density():
    """``y ~ N(a + x b + u[g] + x v[g], sigma)`` with ``(u, v)[:, j] = sd_j z[:, j]``: the
    density in ``(a, b, log sd, z, log sigma)``, on the standardised response the fit
    sees, is ``N(y_std; (mu - m) / s, sigma / s)``, the priors (HalfNormal(1) sds, flat
    intercept, Normal(0, 10) slope, HalfNormal(2) noise), ``N(z; 0, 1)`` and the Jacobians
    ``log sd`` and ``log sigma``."""
    design = design_matrices("y ~ x + (x | g)", small_table())
    X, y = torch.tensor(design.X.to_numpy()), torch.tensor(design.y.to_numpy())
    spec = GLMSpec("gaussian", "identity", True, 10.0, HalfNormal(torch.tensor(2.0, dtype=F64)),
                   group_prior=HalfNormal(torch.tensor(1.0, dtype=F64)))
    model = glm_model(spec, X, y, design.groups)
    layout = ParamLayout(model)
    assert layout.names == ["intercept", "coef", "g_sd", "g_effect", "sigma"]
    inputs = (model.standardise_x(X), *group_inputs(model.groups, design.groups, F64))
    joint = LogJoint(model, layout)
    index, Z = torch.tensor(design.groups[0].index), torch.tensor(design.groups[0].Z)
    for u in torch.randn(4, layout.size, generator=torch.Generator().manual_seed(0), dtype=F64):
        a, b, log_sd, z, log_sigma = u[0], u[1], u[2:4], u[4:12].reshape(4, 2), u[12]
        effect = log_sd.exp() * z
        mu = a + X[:, 0] * b + (Z * effect[index]).sum(-1)
        s, m = model.y_scale, model.y_mean
        expected = (
            normal_log_pdf((y - m) / s, (mu - m) / s, log_sigma.exp() / s).sum()
            + normal_log_pdf(b, 0.0, 10.0)
            + (math.log(2.0) + normal_log_pdf(log_sd.exp(), 0.0, 1.0) + log_sd).sum()
            + normal_log_pdf(z, 0.0, 1.0).sum()
            + math.log(2.0) + normal_log_pdf(log_sigma.exp(), 0.0, 2.0) + log_sigma
        )
        torch.testing.assert_close(joint.single(u, inputs, model.standardise_y(y), 1.0), expected)
        torch.testing.assert_close(layout.values(u)["g_effect"], effect)


# --- radon against NUTS ----------------------------------------------------------------------
# The reference: NumPyro NUTS, 4 chains x 5,000 draws (benchmarks/radon_reference.py; its
# settings, R-hat and ESS are stored with it). With bulk ESS >= 2,975 the reference means'
# own Monte Carlo error is below sd / sqrt(2975) = 0.018 sd, well inside the issue's
# tolerances: means within 0.1 reference sd, sds within 10%. The priors are the Stan
# files': Normal(0, 10) slopes, HalfNormal(1) on sigma_y and the group sds; the intercept
# is flat here against Normal(0, 10) there, a shift of its mean by ~(0.05 / 10)^2 of its value.
FORMULAS = {
    "varying_intercept": "log_radon ~ floor + (1 | county)",
    "county_uranium": "log_radon ~ log_uppm + floor + (1 | county)",
    "varying_slope": "log_radon ~ floor + (floor | county)",
    "intercept_only": "log_radon ~ 1 + (1 | county)",
}
MEAN_TOL, SD_TOL = 0.1, 0.10


def fit_radon(name: str, method: str = "auto") -> nb.BayesianLinearRegression:
    one = HalfNormal(torch.tensor(1.0, dtype=F64))
    return nb.BayesianLinearRegression.from_formula(
        FORMULAS[name], pd.read_csv(RADON), prior_scale=10.0, noise_prior=one, group_prior=one,
        method=method)


@pytest.fixture(scope="module")
def radon_fits():
    """The default fits (``method="auto"``: exact, the scales integrated on a grid) by name,
    and the variational ones by ``(name, "vi")``."""
    cache: dict[object, nb.BayesianLinearRegression] = {}

    def get(name: str, method: str = "auto") -> nb.BayesianLinearRegression:
        if (name, method) not in cache:
            cache[name, method] = fit_radon(name, method)
        return cache[name, method]

    return get


def compared(reg: nb.BayesianLinearRegression, name: str,
             ref: dict[str, dict] | None = None) -> dict[str, tuple]:
    """``{reference name: (q mean, q sd, reference mean, reference sd)}`` as tensors, against
    ``ref`` (``{"mean": {...}, "sd": {...}}``; the NUTS reference by default)."""
    if ref is None:
        ref = json.loads(REFERENCE.read_text())["models"][name]
    mean, sd = reg.posterior_.mean, reg.posterior_.sd
    columns = list(getattr(reg, "feature_names_in_", []))
    ours = {
        "mu_alpha": (mean["intercept"], sd["intercept"]),
        "sigma_y": (mean["sigma"], sd["sigma"]),
        "sigma_alpha": (mean["county_sd"][0], sd["county_sd"][0]),
        "a": (mean["county_effect"][:-1, 0], sd["county_effect"][:-1, 0]),
    }
    if "floor" in columns:
        slope = "mu_beta" if name == "varying_slope" else "beta_floor"
        ours[slope] = (mean["coef"][columns.index("floor")], sd["coef"][columns.index("floor")])
    if "log_uppm" in columns:
        i = columns.index("log_uppm")
        ours["beta_uranium"] = (mean["coef"][i], sd["coef"][i])
    if name == "varying_slope":
        ours["sigma_beta"] = (mean["county_sd"][1], sd["county_sd"][1])
        ours["b"] = (mean["county_effect"][:-1, 1], sd["county_effect"][:-1, 1])
    return {k: (*v, torch.tensor(ref["mean"][k], dtype=F64), torch.tensor(ref["sd"][k], dtype=F64))
            for k, v in ours.items()}


# Where a Gaussian q cannot follow the posterior: the spread of a group-level sd (skewed; a
# Gaussian in log sd understates it, ~0.7 of NUTS's on the varying intercept) and, through
# it, the varying slopes' (down to ~0.85 for a few counties), while k-hat still reads
# usable. The default fit is exact and has none of these; method="vi" is checked apart.
UNDERSTATED_BY_VI = ("sigma_alpha",)


def check_against_reference(reg: nb.BayesianLinearRegression, name: str,
                            ref: dict[str, dict] | None = None, *, mean_tol: float = MEAN_TOL,
                            sd_tol: float = SD_TOL, skip_sd: tuple[str, ...] = ()) -> None:
    for key, (mean, sd, ref_mean, ref_sd) in compared(reg, name, ref).items():
        z = ((mean - ref_mean) / ref_sd).abs().max()
        assert z < mean_tol, f"{key}: mean {z:.3f} reference sds off"
        if key not in skip_sd:
            ratio = sd / ref_sd
            assert ((ratio - 1).abs() < sd_tol).all(), f"{key}: sd ratio {ratio}"


@pytest.mark.parametrize("name", ["varying_intercept", "county_uranium", "varying_slope"])
def test_radon_matches_nuts(radon_fits, name):
    """The default fit, exact given the scales and the scales integrated on a grid, against
    NUTS: every mean and every sd, group sds included."""
    reg = radon_fits(name)
    assert reg.posterior_.info.family == "exact"
    check_against_reference(reg, name)


def test_radon_by_vi_matches_nuts_but_for_the_group_sds_spread(radon_fits):
    """``method="vi"`` (``nb.fit``, full-rank): means within 0.1 sd, sds within 10% but the
    group sd's, which a Gaussian in log sd understates."""
    check_against_reference(radon_fits("varying_intercept", "vi"), "varying_intercept",
                            skip_sd=UNDERSTATED_BY_VI)


@pytest.mark.xfail(strict=True, reason=(
    "a Gaussian in log sd understates the spread of a group-level sd, and through it of "
    "varying slopes, while k-hat still reads usable; reweighted() corrects it where k-hat "
    "allows, and the default (exact) fit has it right"))
def test_the_spread_a_gaussian_understates_matches_nuts(radon_fits):
    _, sd, _, ref_sd = compared(radon_fits("varying_intercept", "vi"), "varying_intercept")[
        "sigma_alpha"]
    assert ((sd / ref_sd - 1).abs() < SD_TOL).all()


# --- predictions, names, exports ------------------------------------------------------------
def test_a_new_group_is_predicted_from_the_population(radon_fits):
    """A seen county's predictive mean is ``intercept + floor coef + u[county]``, within
    four Monte Carlo sds of 20,000 predictive draws (sd ~0.8: 4 x 0.8 / sqrt(20000) =
    0.023); an unseen one's has the population's spread: predictive variance
    ``E sigma^2 + E sd^2`` plus the fixed part's, within the Monte Carlo error of 20,000
    draws (a variance's relative sd is about sqrt(2 / 20000) = 1%; 4% is four of them)."""
    reg = radon_fits("varying_intercept")
    rows = pd.DataFrame({"floor": [0, 0], "county": [2, 999]})
    pred = reg.predict_distribution(rows, n_samples=20_000)
    mean = reg.posterior_.mean
    torch.testing.assert_close(pred.mean[0], mean["intercept"] + mean["county_effect"][1, 0],
                               atol=0.025, rtol=0)
    draws = reg.posterior_.sample(20_000, seed=1)
    expected = (draws["sigma"] ** 2 + draws["county_sd"][:, 0] ** 2).mean() + draws[
        "intercept"].var()
    assert abs(float(pred.sd[1] ** 2 / expected) - 1) < 0.04
    assert pred.sd[1] > pred.sd[0]


def test_summary_and_arviz_name_the_groups_after_their_labels(radon_fits):
    reg = radon_fits("varying_intercept")
    table = reg.summary()
    assert {"floor", "1|county_sigma", "1|county[1]", "1|county[85]", "1|county[<new>]"} <= set(
        table.index)
    idata = reg.to_arviz(n_draws=10)
    effect = idata.posterior["county_effect"]
    assert effect.dims == ("chain", "draw", "county", "county_column")
    assert list(effect.county.values[[0, -1]]) == ["1", NEW_GROUP]
    assert list(idata.posterior["county_sd"].county_column.values) == ["1"]


def test_a_fitted_group_model_pickles(radon_fits):
    reg = radon_fits("varying_intercept")
    rows = pd.read_csv(RADON).head(5)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_allclose(again.predict(rows), reg.predict(rows))


def test_group_model_errors_name_the_argument(radon_fits):
    reg = radon_fits("varying_intercept")
    with pytest.raises(ValueError, match="X must be a DataFrame holding the columns of the formula"):
        reg.predict(np.zeros((2, 1)))
    table = pd.read_csv(RADON)
    five = "log_radon ~ floor + (floor + log_uppm + x | county)"
    with pytest.raises(ValueError, match=re.escape(
            "method='exact' integrates at most 4 scales (the noise sd and one sd per varying "
            "column of each group term), got 5: fit with method='vi'")):
        nb.BayesianLinearRegression.from_formula(five, table.assign(x=table.floor ** 2),
                                                 method="exact")
    with pytest.raises(TypeError, match="group_prior must be a torch Distribution or 'auto'"):
        nb.BayesianLinearRegression.from_formula(FORMULAS["varying_intercept"], table,
                                                 group_prior=None)
    with pytest.raises(ValueError, match=re.escape(
            "formula must have an intercept or a fixed term with columns, got "
            "'log_radon ~ 0 + (1 | county)'")):
        design_matrices("log_radon ~ 0 + (1 | county)", table)
    with pytest.raises(ValueError, match=re.escape("Found array with 0 feature(s)")):
        nb.BayesianLinearRegression().fit(np.zeros((5, 0)), np.arange(5.0))  # a formula's only


# --- other families --------------------------------------------------------------------------
class PoissonGroups(nb.Model):
    """``y ~ Poisson(exp(a + b x + u[g]))``, ``u ~ N(0, sd)``, written by hand."""

    def __init__(self, n_groups: int) -> None:
        super().__init__()
        self.intercept = nb.param(None)
        self.coef = nb.param(torch.distributions.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        self.sd = nb.param(HalfNormal(torch.tensor(1.0, dtype=F64)))
        self.u = nb.param(lambda m: torch.distributions.Normal(0.0, m.sd), shape=(n_groups,))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.distributions.Poisson:
        return torch.distributions.Poisson(rate=(self.intercept + self.coef * x + self.u[g]).exp())


def test_a_poisson_group_model_is_the_hand_written_one():
    """``BayesianGLM("poisson")`` with ``(1 | g)`` (its standardised twin, the log link's
    maps) against ``nb.fit`` of the same model written by hand: both full-rank optima are
    within 0.02 sd of the ELBO's, and their sds within 2% (the fixed-draw tolerances), so
    the means agree within 0.1 sd (0.04 and a margin for the replicate's noisy estimate)
    and the sds within 5% (0.04 likewise)."""
    gen = torch.Generator().manual_seed(0)
    g = torch.arange(8).repeat_interleave(25)
    x = torch.randn(200, generator=gen, dtype=F64)
    u = 0.5 * torch.randn(8, generator=gen, dtype=F64)
    y = torch.poisson((0.3 + 0.4 * x + u[g]).exp(), generator=gen)
    table = pd.DataFrame({"y": y.numpy(), "x": x.numpy(), "g": g.numpy()})
    reg = nb.BayesianGLM.from_formula("y ~ x + (1 | g)", table, family="poisson",
                                      prior_scale=1.0, approximation="fullrank",
                                      group_prior=HalfNormal(torch.tensor(1.0, dtype=F64)))
    hand = nb.fit(PoissonGroups(8), (x, g), y, family="fullrank", seed=0, progress=False)
    ours, sd = reg.posterior_.mean, reg.posterior_.sd
    pairs = [("intercept", ours["intercept"]), ("coef", ours["coef"][0]),
             ("sd", ours["g_sd"][0]), ("u", ours["g_effect"][:-1, 0])]
    for name, mean in pairs:
        assert ((mean - hand.mean[name]).abs() / hand.sd[name]).max() < 0.1, name
    assert ((sd["g_effect"][:-1, 0] / hand.sd["u"] - 1).abs() < 0.05).all()


# --- the intercept alone as the fixed part ---------------------------------------------------
def exact_varying_intercept(y: np.ndarray, group: np.ndarray) -> dict[str, dict]:
    """The exact posterior moments of ``y_i ~ N(mu + a[g_i], sigma_y)``, ``a_j ~ N(0,
    sigma_a)``, flat ``mu``, ``sigma_y, sigma_a ~ HalfNormal(1)``, keyed as the NUTS reference.

    Given the scales the model is Gaussian: with ``n_j`` rows in group ``j``, their mean
    ``ybar_j`` and ``v_j = sigma_a^2 + sigma_y^2 / n_j``, ``a`` and ``mu`` integrated out,

        p(sigma_y, sigma_a | y) ∝ sigma_y^-(N - J) exp(-SS / (2 sigma_y^2)) prod_j v_j^-1/2
                                  exp(-sum_j (ybar_j - m)^2 / (2 v_j)) P^-1/2 p(sigma_y) p(sigma_a)

    (``SS`` the within-group sum of squares, ``P = sum_j 1 / v_j``, ``m = sum_j ybar_j / v_j / P``);
    ``mu ~ N(m, 1 / P)`` and ``a_j ~ N(r_j (ybar_j - m), r_j sigma_y^2 / n_j + r_j^2 / P)``
    with ``r_j = sigma_a^2 / v_j`` given them. The two scales are integrated on a 200 x 200
    grid in their logs, whose edges hold less than 1e-8 of the mass (a 400 x 400 grid moves
    every moment by less than 1e-10)."""
    _, index = np.unique(group, return_inverse=True)
    n = np.bincount(index).astype(float)
    ybar = np.bincount(index, y) / n
    ss = float(np.sum((y - ybar[index]) ** 2))
    log_sy = np.linspace(math.log(0.6), math.log(1.0), 200)[:, None, None]
    log_sa = np.linspace(math.log(0.08), math.log(0.8), 200)[None, :, None]
    sy, sa = np.exp(log_sy), np.exp(log_sa)
    v = sa**2 + sy**2 / n  # (200, 200, J)
    P = (1 / v).sum(-1, keepdims=True)
    m = (ybar / v).sum(-1, keepdims=True) / P
    log_density = (
        -(len(y) - len(n)) * log_sy - ss / (2 * sy**2) - 0.5 * np.log(v).sum(-1, keepdims=True)
        - 0.5 * ((ybar - m) ** 2 / v).sum(-1, keepdims=True) - 0.5 * np.log(P)
        - sy**2 / 2 - sa**2 / 2 + log_sy + log_sa  # HalfNormal(1) priors, the logs' Jacobian
    )
    w = np.exp(log_density - log_density.max())
    w /= w.sum()
    edges = w[[0, -1]].sum() + w[:, [0, -1]].sum()
    assert edges < 1e-8, f"the grid misses {edges:.1e} of the mass"
    r = sa**2 / v
    given = {  # (mean, variance) given the scales
        "mu_alpha": (m, 1 / P), "sigma_y": (np.broadcast_to(sy, w.shape), 0.0),
        "sigma_alpha": (np.broadcast_to(sa, w.shape), 0.0),
        "a": (r * (ybar - m), r * sy**2 / n + r**2 / P),
    }
    ref: dict[str, dict] = {"mean": {}, "sd": {}}
    for key, (mean, variance) in given.items():
        first = (w * mean).sum((0, 1))
        sd = np.sqrt((w * (variance + mean**2)).sum((0, 1)) - first**2)
        ref["mean"][key], ref["sd"][key] = (first, sd) if key == "a" else (first[0], sd[0])
    return ref


def test_radon_varying_intercept_alone_matches_its_exact_posterior(radon_fits):
    """``log_radon ~ 1 + (1 | county)``, no fixed column: against the exact posterior
    computed another way (``exact_varying_intercept``). The intercept's moments are the
    grid's sums (no draws), the others come from 10,000 draws, whose Monte Carlo sd is 0.01
    sd for a mean and about 0.7% for an sd: means within 0.04 sd, sds within 4% (with the
    draws' spread over a grid cell, under 0.5% here)."""
    reg = radon_fits("intercept_only")
    assert reg.coef_.shape == (0,) and reg.intercept_ == pytest.approx(
        float(reg.posterior_.mean["intercept"]))
    table = pd.read_csv(RADON)
    exact = exact_varying_intercept(table.log_radon.to_numpy(), table.county.to_numpy())
    check_against_reference(reg, "intercept_only", exact, mean_tol=0.04, sd_tol=0.04)


def test_the_varying_intercept_alone_predicts_seen_and_new_groups(radon_fits):
    """As ``test_a_new_group_is_predicted_from_the_population``, without a fixed column: a
    seen county's predictive mean is ``intercept + u[county]`` within four Monte Carlo sds
    of 20,000 draws (0.025), a new one's is the intercept's (its effect's mean is 0) and its
    variance ``E sigma^2 + E sd^2 + Var intercept`` within 4% (four relative sds of a
    variance from 20,000 draws). ``predict``'s means, from its own 2,000 draws, agree within
    four Monte Carlo sds of their difference (4 x 0.83 x sqrt(1 / 2000 + 1 / 20000) = 0.078)."""
    reg = radon_fits("intercept_only")
    rows = pd.DataFrame({"county": [2, 999]})
    pred = reg.predict_distribution(rows, n_samples=20_000)
    mean = reg.posterior_.mean
    torch.testing.assert_close(pred.mean, torch.stack([
        mean["intercept"] + mean["county_effect"][1, 0], mean["intercept"]]), atol=0.025, rtol=0)
    draws = reg.posterior_.sample(20_000, seed=1)
    expected = (draws["sigma"] ** 2 + draws["county_sd"][:, 0] ** 2).mean() + draws[
        "intercept"].var()
    assert abs(float(pred.sd[1] ** 2 / expected) - 1) < 0.04
    np.testing.assert_allclose(reg.predict(rows), pred.mean.numpy(), atol=0.08, rtol=0)


def test_the_varying_intercept_alone_names_its_rows(radon_fits):
    reg = radon_fits("intercept_only")
    counties = [f"1|county[{c}]" for c in range(1, 86)]
    assert list(reg.summary().index) == [
        "intercept", "1|county_sigma", *counties, "1|county[<new>]", "sigma"]
    idata = reg.to_arviz(n_draws=10)
    assert set(idata.posterior.data_vars) == {"intercept", "county_sd", "county_effect", "sigma"}
    assert idata.posterior["county_effect"].dims == ("chain", "draw", "county", "county_column")


def small_groups() -> pd.DataFrame:
    """40 rows in 4 groups: a response, counts and labels that vary by group."""
    gen = np.random.default_rng(0)
    g = np.repeat(np.arange(4), 10)
    u = np.array([-0.6, -0.2, 0.2, 0.6])[g]
    return pd.DataFrame({
        "y": 1.0 + u + gen.normal(0.0, 0.5, 40), "c": gen.poisson(np.exp(1.0 + u)),
        "b": (gen.random(40) < 1 / (1 + np.exp(-2 * u))).astype(int), "g": g,
    })


@pytest.mark.parametrize(
    ("estimator", "formula", "params"),
    [
        (nb.StudentTLinearRegression, "y ~ 1 + (1 | g)", {"family": "meanfield"}),
        (nb.BayesianGLM, "c ~ 1 + (1 | g)", {"family": "poisson", "approximation": "meanfield"}),
        (nb.BayesianGLMClassifier, "b ~ (1 | g)", {"approximation": "meanfield"}),
    ],
)
def test_every_estimator_fits_a_varying_intercept_alone(estimator, formula, params):
    """The other estimators' formulas take the intercept alone as fixed part too (mean-field
    fits, for speed: the path is checked here, the posterior above)."""
    reg = estimator.from_formula(formula, small_groups(), progress=False, **params)
    assert reg.coef_.shape == (0,)
    assert list(reg.summary().index[:3]) == ["intercept", "1|g_sigma", "1|g[0]"]
    assert reg.predict(pd.DataFrame({"g": [1, 9]})).shape == (2,)  # seen, new


def test_an_intercept_alone_is_the_closed_form():
    """``y ~ 1`` without groups. Gaussian, flat priors, exact: ``p(mu, sigma | y) ∝
    sigma^-N exp(-(S + N (mu - ybar)^2) / (2 sigma^2))``, so ``mu`` is Student-t with mean
    ``ybar`` and variance ``S / (N (N - 4))`` (``S`` the sum of squares about ``ybar``).
    Poisson counts and a flat prior on the log rate: the rate is Gamma(sum y, N), its log
    has mean ``digamma(sum y) - log N`` and variance ``trigamma(sum y)``. Labels and a flat
    prior on the logit: ``p ~ Beta(k, N - k)``, its logit has mean ``digamma(k) -
    digamma(N - k)`` and variance ``trigamma(k) + trigamma(N - k)``. The exact one to
    rounding; the variational ones within 0.1 sd and 10% in sd, as elsewhere (the Gaussian
    optimum of a log-Gamma of shape >= 100 is within 1 / (2 sqrt(100)) = 0.05 sd of its
    mean)."""
    i = np.arange(400)
    y = 1.0 + np.sin(i)
    table = pd.DataFrame({"y": y, "c": i % 5, "b": (i % 4 == 0).astype(int)})
    exact = nb.BayesianLinearRegression.from_formula("y ~ 1", table, method="exact",
                                                     prior_scale=None, noise_prior=None)
    S, N = float(np.sum((y - y.mean()) ** 2)), len(y)
    post = exact.posterior_
    assert exact.coef_.shape == (0,) and list(exact.summary().index) == ["intercept", "sigma"]
    torch.testing.assert_close(post.mean["intercept"], torch.tensor(y.mean(), dtype=F64))
    torch.testing.assert_close(post.sd["intercept"], torch.tensor(math.sqrt(S / (N * (N - 4))),
                                                                  dtype=F64))
    total, k = (torch.tensor(float(table[c].sum()), dtype=F64) for c in ("c", "b"))  # 800, 100
    fits = [
        (nb.BayesianGLM.from_formula("c ~ 1", table, family="poisson", progress=False),
         torch.digamma(total) - math.log(N), torch.polygamma(1, total)),
        (nb.BayesianGLMClassifier.from_formula("b ~ 1", table, progress=False),
         torch.digamma(k) - torch.digamma(N - k),
         torch.polygamma(1, k) + torch.polygamma(1, N - k)),
    ]
    for reg, mean, variance in fits:
        name = type(reg).__name__
        ours, sd = reg.posterior_.mean["intercept"], reg.posterior_.sd["intercept"]
        assert abs(ours - mean) < 0.1 * variance.sqrt(), name
        assert abs(sd / variance.sqrt() - 1) < 0.1, name
