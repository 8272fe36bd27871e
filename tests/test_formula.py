"""Design matrices from formulas, and ``BayesianLinearRegression.from_formula``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import noisybayes as nb
from noisybayes.estimators.robust import StudentTLinearRegression
from noisybayes.tables.formula import design_matrices

FLAT = {"method": "exact", "prior_scale": None, "noise_prior": None}


@pytest.fixture(autouse=True)
def one_thread():
    """Small fits run fastest on one thread (as the command line runs them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    x1 = rng.uniform(1.0, 5.0, n)
    g = rng.choice(["a", "b", "c"], n)
    y = 1.0 + 2.0 * x1 + (g == "b") * 1.5 - (g == "c") + rng.normal(0.0, 0.5, n)
    return pd.DataFrame({"y": y, "x1": x1, "g": g, "name": [f"r{i}" for i in range(n)]})


def test_design_columns_follow_the_formula(table):
    design = design_matrices("y ~ x1 + C(g) + x1:C(g) + np.log(x1)", table)
    X = design.X
    assert design.spec.intercept
    assert list(X.columns) == [
        "x1", "C(g)[T.b]", "C(g)[T.c]", "np.log(x1)", "x1:C(g)[T.b]", "x1:C(g)[T.c]"
    ]
    np.testing.assert_array_equal(X["C(g)[T.b]"], (table.g == "b").astype(float))
    np.testing.assert_allclose(X["np.log(x1)"], np.log(table.x1))
    np.testing.assert_allclose(X["x1:C(g)[T.c]"], table.x1 * (table.g == "c"))
    np.testing.assert_array_equal(design.y, table.y)
    assert design.n_rows == 60 and design.n_dropped == 0


def test_minus_one_removes_the_intercept(table):
    design = design_matrices("y ~ x1 - 1", table)
    assert not design.spec.intercept and list(design.X.columns) == ["x1"]


def test_rows_with_missing_values_are_dropped_and_counted(table):
    table.loc[[3, 7], "x1"] = np.nan
    table.loc[[7, 9], "y"] = np.nan
    table.loc[11, "name"] = None  # not used by the formula: the row stays
    design = design_matrices("y ~ x1", table)
    assert design.n_dropped == 3 and design.missing_by_column == {"y": 2, "x1": 2}
    assert len(design.X) == 57 and not {3, 7, 9} & set(design.X.index)


def test_a_numeric_column_with_stray_text_is_refused_unless_asked_as_categories():
    """Read from a CSV, one text value makes a numeric column text, which a bare name would
    turn into one dummy per value; ``C(x)`` still asks for categories, and a column of
    category names is a categorical as ever."""
    frame = pd.DataFrame({"y": np.arange(6.0), "x": ["0.1", "0.2z", "0.3", "0.4", "0.5", "0.6"],
                          "g": list("ababab")})
    with pytest.raises(ValueError, match=r"^column 'x' must hold numbers or categories, got "
                       r"numbers stored as text with some other text \(e.g. '0.2z' at index 1\): "
                       r"clean the column, or write C\(x\) in the formula"):
        design_matrices("y ~ x", frame)
    assert design_matrices("y ~ C(x)", frame).X.shape == (6, 5)
    frame["x col"] = frame["x"]  # a name that needs quoting is checked as well
    with pytest.raises(ValueError, match=r"^column 'x col' must hold numbers or categories, .*"
                       r"write C\(Q\('x col'\)\) in the formula"):
        design_matrices('y ~ Q("x col")', frame)
    assert design_matrices("y ~ C(Q('x col'))", frame).X.shape == (6, 5)
    frame["class"] = frame["x"]  # a Python keyword is quoted in the hint too
    with pytest.raises(ValueError, match=r"write C\(Q\('class'\)\) in the formula"):
        design_matrices("y ~ Q('class')", frame)
    assert list(design_matrices("y ~ g", frame).X.columns) == ["g[T.b]"]
    frame["code"] = ["01", "02", "03", "01", "02", "03"]  # codes as text: categories
    frame["flag"] = [True, False, None, True, False, True]  # a CSV's booleans with a blank
    frame["declared"] = frame["x"].astype("category")
    for column, width in (("code", 2), ("flag", 1), ("declared", 5)):
        assert design_matrices(f"y ~ {column}", frame).X.shape[1] == width, column


def test_missing_error_refuses(table):
    table.loc[[3, 7], "x1"] = np.nan
    with pytest.raises(ValueError) as info:
        design_matrices("y ~ x1", table, missing="error")
    assert str(info.value) == (
        "data must have no missing values in the formula's columns, got 2 row(s) with "
        "missing values (x1: 2)"
    )


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x1 + x9", "formula must use columns of the table, got unknown column 'x9' in "
         "'y ~ x1 + x9' (columns: y, x1, g, name)"),
        ("name ~ x1", "the response column 'name' must be numeric, got dtype str"),
        ("x1 + g", "formula must have the form 'response ~ terms', got 'x1 + g'"),
        ("y ~ np.log(x1 - 3)", "design column 'np.log(x1 - 3)' must be finite, got"),
        ("y ~ (x1", "formula could not be parsed: "),
        ("y ~ 0", "formula must have an intercept or a fixed term with columns, got 'y ~ 0'"),
        ("y + x1 ~ g", "formula must have one numeric response, got 2 columns ['y', 'x1'] "
         "from 'y + x1 ~ g'"),
    ],
)
def test_formula_errors_name_the_problem(table, formula, message):
    with pytest.raises(ValueError) as info:
        design_matrices(formula, table)
    assert str(info.value).startswith(message)


def test_an_intercept_alone_gives_a_design_of_no_columns(table):
    """``y ~ 1`` and ``y ~ 1 + (1 | g)`` ask for no fixed column; a term that gives none (a
    categorical with one level) is a mistake."""
    for formula in ("y ~ 1", "y ~ 1 + (1 | g)"):
        design = design_matrices(formula, table)
        assert design.X.shape == (60, 0) and design.spec.intercept, formula
        assert design.spec.transform(table.head(3)).X.shape == (3, 0)
    with pytest.raises(ValueError) as info:
        design_matrices("y ~ C(s) + (1 | g)", table.assign(s="one level"))
    assert str(info.value) == (
        "formula terms in 's' must give design columns, got none from 'y ~ C(s) + (1 | g)' "
        "(a categorical column with one level has none beyond the intercept)")


def test_empty_table_and_bad_arguments(table):
    with pytest.raises(ValueError, match=r"^data must have at least one row, got an empty table$"):
        design_matrices("y ~ x1", table.iloc[:0])
    with pytest.raises(ValueError, match=r"^missing must be one of 'drop', 'error', got 'keep'$"):
        design_matrices("y ~ x1", table, missing="keep")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^data must be a pandas DataFrame, got dict$"):
        design_matrices("y ~ x1", {"y": [1.0]})
    table["y"] = np.nan
    with pytest.raises(ValueError, match=r"^data must keep at least one row after dropping"):
        design_matrices("y ~ x1", table)


def test_transform_rebuilds_the_design_of_new_rows(table):
    design = design_matrices("y ~ x1 * C(g)", table)
    again = design.spec.transform(table.drop(columns=["y"]))
    pd.testing.assert_frame_equal(again.X, design.X)
    unseen = r"^data must only hold categories seen at fit time, got 'z'$"
    with pytest.raises(ValueError, match=unseen):
        design.spec.transform(pd.DataFrame({"x1": [1.0], "g": ["z"]}))
    many = pd.DataFrame({"x1": np.ones(30), "g": [f"n{i:02d}" for i in range(30)]})
    with pytest.raises(ValueError) as info:
        design.spec.transform(many)
    assert str(info.value) == (
        "data must only hold categories seen at fit time, got 'n00', 'n01', 'n02', 'n03', "
        "'n04', 'n05', 'n06', 'n07', 'n08', 'n09' and 20 more"
    )
    unknown = r"^formula must use columns of the table, got unknown column 'g'"
    with pytest.raises(ValueError, match=unknown):
        design.spec.transform(pd.DataFrame({"x1": [1.0]}))


def test_from_formula_equals_fit_on_the_design(table):
    """Same closed-form posterior as fitting the hand-built design; rows named after it."""
    reg = nb.BayesianLinearRegression.from_formula("y ~ x1 + C(g)", table, **FLAT)
    X = pd.DataFrame({
        "x1": table.x1, "C(g)[T.b]": (table.g == "b") * 1.0, "C(g)[T.c]": (table.g == "c") * 1.0
    })
    by_hand = nb.BayesianLinearRegression(**FLAT).fit(X, table.y)
    assert list(reg.summary().index) == ["intercept", "x1", "C(g)[T.b]", "C(g)[T.c]", "sigma"]
    torch.testing.assert_close(reg.coef_, by_hand.coef_)
    torch.testing.assert_close(reg.intercept_, by_hand.intercept_)
    new = table.head(5).drop(columns=["y"])
    torch.testing.assert_close(
        reg.predict_distribution(reg.formula_.transform(new).X).mean,
        by_hand.predict_distribution(X.head(5)).mean,
    )
    assert reg.design_.n_rows == 60


def test_from_formula_without_intercept(table):
    reg = nb.BayesianLinearRegression.from_formula("y ~ x1 - 1", table, **FLAT)
    assert not reg.fit_intercept and list(reg.summary().index) == ["x1", "sigma"]
    with pytest.raises(TypeError, match=r"^fit_intercept must not be given with a formula"):
        nb.BayesianLinearRegression.from_formula("y ~ x1", table, fit_intercept=False)


def test_student_t_needs_vi(table):
    with pytest.raises(ValueError) as info:
        StudentTLinearRegression.from_formula("y ~ x1", table, method="exact")
    assert str(info.value) == (
        "method must be 'vi' for the Student-t likelihood (no closed form), got 'exact'"
    )


def test_student_t_df_prior_must_be_a_distribution(table):
    with pytest.raises(TypeError) as info:
        StudentTLinearRegression.from_formula("y ~ x1", table, df_prior=3.0)
    assert str(info.value) == "df_prior must be a torch Distribution or None, got 3.0"


def test_student_t_resists_outliers():
    """10% gross outliers: the Student-t slope stays within 4 posterior sds of the truth, the
    Gaussian one does not; the learned df is small (heavy tails)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(200, generator=gen, dtype=torch.float64) * 4 - 2
    y = 1.0 + 2.0 * x + 0.3 * torch.randn(200, generator=gen, dtype=torch.float64)
    y[::10] += 15.0 * torch.sign(x[::10])
    frame = pd.DataFrame({"x": x.numpy(), "y": y.numpy()})
    robust = StudentTLinearRegression.from_formula("y ~ x", frame, seed=0)
    plain = nb.BayesianLinearRegression.from_formula("y ~ x", frame, **FLAT)
    t_table, g_table = robust.summary(), plain.summary()
    assert abs(t_table.loc["x", "mean"] - 2.0) < 4 * t_table.loc["x", "sd"]
    assert abs(g_table.loc["x", "mean"] - 2.0) > 4 * g_table.loc["x", "sd"]
    assert t_table.loc["df", "mean"] < 5


def test_a_refit_on_arrays_forgets_the_formula():
    """After ``from_formula`` a fit on arrays must not read new rows through the old
    formula (a transformed column would be transformed again)."""
    table = pd.DataFrame({"a": np.linspace(0.0, 1.0, 40), "b": np.linspace(1.0, 2.0, 40) ** 2})
    table["y"] = np.exp(table["a"]) + table["b"] + np.random.default_rng(0).normal(0, 0.1, 40)
    reg = nb.BayesianLinearRegression.from_formula("y ~ np.exp(a) + b", table)
    assert hasattr(reg, "formula_")
    reg.fit(table[["a", "b"]].to_numpy(), table["y"].to_numpy())
    assert not hasattr(reg, "formula_") and not hasattr(reg, "design_")
