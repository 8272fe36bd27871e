"""The ``noisybayes fit`` command: results against reference posteriors, exit codes and the
exact error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import noisybayes as nb
from noisybayes.cli.fit_report import advice
from noisybayes.cli.main import build_parser, main
from noisybayes.infer.diagnostics import CheckReport
from noisybayes.tables.data_io import example_path

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
KIDIQ = SHARED / "posteriordb" / "kidiq-kidscore_momiq"
FLAT = ["--method", "exact", "--prior-scale", "none", "--noise-prior", "none"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def line_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 10.0, 80)
    table = pd.DataFrame({
        "y": 1.0 + 0.5 * x + rng.normal(0.0, 1.0, 80), "x": x, "g": rng.choice(["a", "b"], 80),
        "label": [f"row{i}" for i in range(80)],
    })
    path = tmp_path / "line.csv"
    table.to_csv(path, index=False)
    return path


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not KIDIQ.is_dir(), reason=f"reference posterior not found at {KIDIQ}")
def test_fit_agrees_with_stan_on_kidiq(tmp_path, capsys):
    """kid_score ~ mom_iq, beta flat, sigma ~ HalfCauchy(0, 2.5), against 10,000 NUTS draws:
    means within 0.1 reference sd, sds within 10% (Monte Carlo error of the reference: about
    0.01 sd for means, 0.7% for sds)."""
    data = json.loads((KIDIQ / "data.json").read_text())
    csv = tmp_path / "kidiq.csv"
    table = pd.DataFrame({"kid_score": data["kid_score"], "mom_iq": data["mom_iq"]})
    table.to_csv(csv, index=False)
    out_json = tmp_path / "fit.json"
    code, out, err = run(
        ["fit", csv, "--formula", "kid_score ~ mom_iq", "--prior-scale", "none",
         "--noise-prior", "halfcauchy:2.5", "--json", out_json], capsys,
    )
    assert code == 0, err
    assert "rows: 434 used of 434 (0 dropped for missing values)" in out
    fitted = json.loads(out_json.read_text())["summary"]
    reference = pd.read_csv(KIDIQ / "reference_draws.csv")
    for ours, theirs in (("intercept", "beta[1]"), ("mom_iq", "beta[2]"), ("sigma", "sigma")):
        ref_mean, ref_sd = reference[theirs].mean(), reference[theirs].std()
        assert abs(fitted[ours]["mean"] - ref_mean) < 0.1 * ref_sd, ours
        assert abs(fitted[ours]["sd"] / ref_sd - 1) < 0.10, ours


def test_fit_prints_table_and_writes_predictions(line_csv, tmp_path, capsys):
    new = tmp_path / "new.csv"
    pd.DataFrame({"x": [0.0, 5.0], "g": ["a", "b"]}).to_csv(new, index=False)
    pred_csv = tmp_path / "pred.csv"
    code, out, err = run(
        ["fit", line_csv, "--formula", "y ~ x + C(g)", *FLAT, "--predict", new, "--out", pred_csv],
        capsys,
    )
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("noisybayes fit: y ~ x + C(g)  [gaussian likelihood, exact,")
    assert lines[1] == "rows: 80 used of 80 (0 dropped for missing values)"
    assert "fit: converged after 0 steps" in out and "wrote 2 predictions of y to" in out
    for name in ("intercept", "x", "C(g)[T.b]", "sigma"):
        assert any(line.startswith(name) for line in lines), name
    predictions = pd.read_csv(pred_csv)
    assert list(predictions.columns) == [
        "x", "g", "predicted_mean", "predicted_sd", "predicted_3%", "predicted_97%",
        "predicted_quantity",
    ]
    assert set(predictions["predicted_quantity"]) == {"y"}
    table = pd.read_csv(line_csv)
    reg = nb.BayesianLinearRegression.from_formula(
        "y ~ x + C(g)", table, method="exact", prior_scale=None, noise_prior=None
    )
    expected = reg.predict_distribution(pd.DataFrame({"x": [0.0, 5.0], "C(g)[T.b]": [0.0, 1.0]}))
    np.testing.assert_allclose(predictions["predicted_mean"], expected.mean.numpy(), rtol=1e-6)


def test_missing_values_are_dropped_with_a_warning(line_csv, capsys):
    table = pd.read_csv(line_csv)
    table.loc[[2, 5], "x"] = np.nan
    table.loc[9, "y"] = np.nan
    table.to_csv(line_csv, index=False)
    code, out, err = run(["fit", line_csv, "--formula", "y ~ x", *FLAT], capsys)
    assert code == 0
    assert err == "noisybayes: warning: dropped 3 of 80 rows with missing values (y: 1, x: 2)\n"
    assert "rows: 77 used of 80 (3 dropped for missing values)" in out
    code, out, err = run(["fit", line_csv, "--formula", "y ~ x", "--missing", "error"], capsys)
    assert code == 1 and out == ""
    assert err == (
        "noisybayes: error: data must have no missing values in the formula's columns, got 3 "
        "row(s) with missing values (y: 1, x: 2)\n"
    )


def test_json_and_plot_are_written(line_csv, tmp_path, capsys):
    out_json, png = tmp_path / "fit.json", tmp_path / "fit.png"
    code, _, err = run(
        ["fit", line_csv, "--formula", "y ~ x", *FLAT, "--json", out_json, "--plot", png], capsys
    )
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["n_used"] == 80 and set(record["summary"]) == {"intercept", "x", "sigma"}
    assert png.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{dir}/nope.csv", "--formula", "y ~ x"],
         "path must name an existing file, got '{dir}/nope.csv' (no such file)"),
        (["fit", "{csv}", "--formula", "y ~ x + w"],
         "formula must use columns of the table, got unknown column 'w' in 'y ~ x + w' "
         "(columns: y, x, g, label)"),
        (["fit", "{csv}", "--formula", "label ~ x"],
         "the response column 'label' must be numeric, got dtype str"),
        (["fit", "{csv}", "--formula", "y ~ x", "--out", "{dir}/p.csv"],
         "--out needs --predict FILE, the table of rows to predict"),
        (["fit", "{csv}", "--formula", "y ~ x", "--likelihood", "student_t", "--method", "exact"],
         "--method exact needs --likelihood gaussian (the student_t likelihood has no closed "
         "form), got --likelihood student_t"),
        (["fit", "{csv}", "--formula", "y ~ x", *FLAT, "--reweight"],
         "--reweight needs --method vi: the exact posterior needs no correction"),
        (["fit", "{csv}", "--formula", "y ~ x", *FLAT, "--max-steps", "10"],
         "--max-steps needs --method vi: the exact posterior takes no steps"),
        (["fit", "{csv}", "--formula", "y ~ x", *FLAT, "--family", "meanfield"],
         "--family meanfield needs --method vi: the exact posterior has no variational family"),
        (["fit", "{dir}/empty.csv", "--formula", "y ~ x"],
         "the table in '{dir}/empty.csv' must have at least one row, got none (columns: y, x)"),
        (["fit", "{dir}/blank.csv", "--formula", "y ~ x"],
         "the table in '{dir}/blank.csv' must have a header and rows, got an empty file"),
        (["fit", "{dir}/table.xlsx", "--formula", "y ~ x"],
         "path must end in one of .csv, .tsv, .txt, .parquet, .pq, got '{dir}/table.xlsx'"),
        (["fit", "{dir}", "--formula", "y ~ x"],
         "path must name an existing file, got '{dir}' (a directory)"),
        (["fit", "{csv}", "--formula", "y ~ x", "--predict", "{dir}/missing.csv"],
         "--predict: path must name an existing file, got '{dir}/missing.csv' (no such file)"),
        (["fit", "{csv}", "--formula", "y ~ x + C(g)", "--predict", "{dir}/new.csv"],
         "--predict: formula must use columns of the table, got unknown column 'g' in "
         "'y ~ x + C(g)' (columns: x, z)"),
        (["fit", "{csv}", "--formula", "y ~ x", "--predict", "{dir}/empty.csv"],
         "--predict: the table in '{dir}/empty.csv' must have at least one row, got none "
         "(columns: y, x)"),
        (["fit", "{csv}", "--formula", "y ~ x", "--json", "{dir}/no/fit.json"],
         "--json must name a file in an existing folder, got '{dir}/no/fit.json' "
         "(no folder '{dir}/no')"),
        (["fit", "{csv}", "--formula", "y ~ x", "--predict", "{dir}/new.csv", "--out", "{dir}"],
         "--out must name a file, got '{dir}' (a directory)"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(line_csv, tmp_path, capsys, args, message):
    """Nothing on stdout: every problem is found before the fit, which prints its table."""
    (tmp_path / "empty.csv").write_text("y,x\n")
    (tmp_path / "blank.csv").write_text("")
    (tmp_path / "table.xlsx").write_text("")
    (tmp_path / "new.csv").write_text("x,z\n1,2\n")
    filled = [a.format(dir=tmp_path, csv=line_csv) for a in args]
    code, out, err = run(filled, capsys)
    assert code == 1 and out == ""
    assert err == f"noisybayes: error: {message.format(dir=tmp_path)}\n"


TABLES = {
    "inf.csv": "y,x\n1,0\ninf,1\n3,2\n4,3\n",
    "words.csv": "y,x\na,0\nb,1\na,2\n",
    "one.csv": "y,x\n1,2\n",
    "broken.csv": 'y,x\n1,2\n"unterminated\n',
    "level.csv": "y,x,s\n1,0,a\n2,1,a\n3,2,a\n",
}


@pytest.mark.parametrize(
    ("table", "formula", "words"),
    [
        ("inf.csv", "y ~ x",
         ["response 'y' must be finite, got 1 NaN/inf value(s), the first in the row labelled 1"]),
        ("words.csv", "y ~ x", ["the response column 'y' must be numeric, got dtype"]),
        ("one.csv", "y ~ x", ["1 sample", "minimum of 2"]),
        ("broken.csv", "y ~ x", ["the file '{path}' could not be read as csv:"]),
        ("level.csv", "y ~ s", ["formula terms in 's' must give design columns, got none from "
         "'y ~ s' (a categorical column with one level has none beyond the intercept)"]),
        ("level.csv", "y ~ (x", ["formula could not be parsed:", "(got 'y ~ (x')"]),
    ],
)
def test_a_table_the_fit_cannot_use_is_one_line_and_exit_1(tmp_path, capsys, table, formula,
                                                             words):
    """The library's own words are pinned; where a message quotes a dependency (the CSV
    parser, the formula parser, scikit-learn's row check), only its key words."""
    path = tmp_path / table
    path.write_text(TABLES[table])
    code, out, err = run(["fit", path, "--formula", formula], capsys)
    assert code == 1 and out == ""
    assert err.startswith("noisybayes: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word.format(path=path) in err, (word, err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{csv}", "--formula", "y ~ x", "--prior-scale", "-1"],
         "argument --prior-scale: --prior-scale must be 'auto', 'none' or a number > 0, "
         "got '-1'"),
        (["fit", "{csv}", "--formula", "y ~ x", "--noise-prior", "gamma:2"],
         "argument --noise-prior: --noise-prior must be 'auto', 'none', 'halfcauchy:SCALE', "
         "'halfnormal:SCALE' or 'exponential:RATE' with a number > 0, got 'gamma:2'"),
        (["fit", "{csv}"], "the following arguments are required: --formula"),
    ],
)
def test_malformed_arguments_are_one_line_and_exit_2(line_csv, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main([a.format(csv=line_csv) for a in args])
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert err == f"noisybayes: error: {message} (see 'noisybayes fit --help')\n"


def test_fit_on_the_bundled_table_is_least_squares(capsys, tmp_path):
    """Flat priors, unknown noise: the posterior means are the least-squares coefficients."""
    path = example_path("plants")
    table = pd.read_csv(path)
    out_json = tmp_path / "plants.json"
    code, out, _ = run(
        ["fit", path, "--formula", "growth ~ water + light + C(soil)", *FLAT, "--json", out_json],
        capsys,
    )
    assert code == 0 and "rows: 120 used of 120" in out
    X = np.column_stack([
        np.ones(len(table)), table.water, table.light, table.soil == "loam", table.soil == "sand"
    ]).astype(float)
    beta = np.linalg.lstsq(X, table.growth.to_numpy(), rcond=None)[0]
    summary = json.loads(out_json.read_text())["summary"]
    names = ["intercept", "water", "light", "C(soil)[T.loam]", "C(soil)[T.sand]"]
    np.testing.assert_allclose([summary[n]["mean"] for n in names], beta, rtol=1e-8)
    with pytest.raises(ValueError, match=r"^name must be one of the bundled tables \['plants', 'radon'\]"):
        example_path("nope")


def test_student_t_fit_reports_degrees_of_freedom(capsys):
    code, out, err = run(
        ["fit", example_path("plants"), "--formula", "growth ~ water + C(soil)",
         "--likelihood", "student_t"], capsys,
    )
    assert code == 0, err
    assert "[student_t likelihood, fullrank," in out.splitlines()[0]
    assert any(line.startswith("df ") for line in out.splitlines())
    assert "sigma is the Student-t scale; df its degrees of freedom" in out


def test_unreadable_parquet(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    code, out, err = run(["fit", bad, "--formula", "y ~ x"], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"noisybayes: error: the file '{bad}' could not be read as parquet: ")
    assert err.count("\n") == 1


def test_threads_must_be_positive(line_csv, capsys):
    code, _, err = run(["fit", line_csv, "--formula", "y ~ x", "--threads", "0"], capsys)
    assert code == 2 and err == "noisybayes: error: --threads must be >= 1, got 0\n"


def test_prediction_rows_with_missing_values_are_dropped(line_csv, tmp_path, capsys):
    new = tmp_path / "new.csv"
    pd.DataFrame({"x": [1.0, None, 3.0]}).to_csv(new, index=False)
    code, out, err = run(["fit", line_csv, "--formula", "y ~ x", *FLAT, "--predict", new], capsys)
    assert code == 0
    assert err == f"noisybayes: warning: dropped 1 of 3 rows of {new} with missing values\n"
    assert f"predictions of y for {new} (94% predictive interval):" in out


def test_parquet_is_read(line_csv, tmp_path, capsys):
    parquet = tmp_path / "line.parquet"
    pd.read_csv(line_csv).to_parquet(parquet)
    code, out, _ = run(["fit", parquet, "--formula", "y ~ x", *FLAT], capsys)
    assert code == 0 and "rows: 80 used of 80" in out


def test_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "noisybayes.cli.main", "--help"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0 and "{demo,fit}" in done.stdout


def test_plot_path_needs_a_figure_suffix(line_csv, tmp_path, capsys):
    code, out, err = run(
        ["fit", line_csv, "--formula", "y ~ x", "--plot", tmp_path / "fit.xyz"], capsys
    )
    assert code == 1 and out == ""
    assert err.startswith("noisybayes: error: --plot must end in one of ")
    assert ".png" in err and ".pdf" in err and err.endswith(f", got '{tmp_path}/fit.xyz'\n")


def test_an_existing_file_is_replaced_only_with_force_and_a_table_read_never(
        line_csv, tmp_path, capsys):
    """Nothing the user saved is lost: an output that exists needs ``--force``; one that
    names a table the command reads, or another output's file, is refused even then; all
    before any fit, leaving every file as it was."""
    kept = tmp_path / "results.json"
    kept.write_text("precious")
    new = tmp_path / "new.csv"
    pd.read_csv(line_csv).head(3).to_csv(new, index=False)
    fit = ["fit", line_csv, "--formula", "y ~ x", *FLAT]
    cases = [
        (["--json", kept], f"--json must not name an existing file unless --force is given "
                           f"(to replace it), got '{kept}'"),
        (["--json", line_csv, "--force"],
         f"--json must not name the table it reads as data, got '{line_csv}'"),
        (["--predict", new, "--out", new, "--force"],
         f"--out must not name the table it reads as --predict, got '{new}'"),
        (["--predict", new, "--out", tmp_path / "a.csv", "--json", tmp_path / "a.csv"],
         f"--json must name another file than --out, got '{tmp_path}/a.csv' for both"),
    ]
    for flags, message in cases:
        code, out, err = run([*fit, *flags], capsys)
        assert (code, out, err) == (1, "", f"noisybayes: error: {message}\n")
    assert kept.read_text() == "precious" and not (tmp_path / "a.csv").exists()
    assert len(pd.read_csv(line_csv)) == 80 and len(pd.read_csv(new)) == 3
    code, _, _ = run([*fit, "--json", kept, "--force"], capsys)
    assert code == 0 and json.loads(kept.read_text())["formula"] == "y ~ x"


def test_the_demo_checks_its_outputs_before_it_runs(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "demo.json"
    code, out, err = run(["demo", "--quick", "--no-mcmc", "--json", missing], capsys)
    assert (code, out) == (1, "") and err == (
        f"noisybayes: error: --json must name a file in an existing folder, got '{missing}' "
        f"(no folder '{missing.parent}')\n")
    code, out, err = run(["demo", "--layers", "--plot", tmp_path / "demo.xyz"], capsys)
    assert (code, out) == (1, "") and err.startswith("noisybayes: error: --plot must end in ")
    assert err.endswith(f", got '{tmp_path}/demo.xyz'\n")


def test_unknown_column_of_a_wide_table_is_named_in_a_short_line(tmp_path, capsys):
    wide = tmp_path / "wide.csv"
    pd.DataFrame(np.ones((3, 3000)), columns=[f"c{i}" for i in range(3000)]).to_csv(
        wide, index=False
    )
    code, out, err = run(["fit", wide, "--formula", "c0 ~ nope"], capsys)
    assert code == 1 and out == ""
    assert err == (
        "noisybayes: error: formula must use columns of the table, got unknown column 'nope' "
        "in 'c0 ~ nope' (columns: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2,990 more)\n"
    )


def test_max_steps_must_be_a_positive_integer(line_csv, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", str(line_csv), "--formula", "y ~ x", "--max-steps", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "noisybayes: error: argument --max-steps: --max-steps must be an integer >= 1, got '0' "
        "(see 'noisybayes fit --help')\n"
    )


def test_transformed_response_predictions_name_their_scale(line_csv, tmp_path, capsys):
    """``np.log1p(y) ~ x`` predicts log1p(y): the CSV, the printed line and the JSON say so,
    and the numbers are those of the exact posterior of the transformed response."""
    table = pd.read_csv(line_csv)
    table["y"] = table["y"].abs()
    table.to_csv(line_csv, index=False)
    new, pred_csv, out_json = tmp_path / "new.csv", tmp_path / "pred.csv", tmp_path / "fit.json"
    pd.DataFrame({"x": [2.0, 8.0]}).to_csv(new, index=False)
    code, out, err = run(
        ["fit", line_csv, "--formula", "np.log1p(y) ~ x", *FLAT, "--predict", new,
         "--out", pred_csv, "--json", out_json], capsys,
    )
    assert code == 0, err
    assert (f"wrote 2 predictions on the scale of np.log1p(y), the formula's transformed "
            f"response to {pred_csv}") in out
    predictions = pd.read_csv(pred_csv)
    assert set(predictions["predicted_quantity"]) == {"np.log1p(y)"}
    transformed = table.assign(z=np.log1p(table["y"]))
    reg = nb.BayesianLinearRegression.from_formula(
        "z ~ x", transformed, method="exact", prior_scale=None, noise_prior=None
    )
    expected = reg.predict_distribution(pd.DataFrame({"x": [2.0, 8.0]}))
    np.testing.assert_allclose(predictions["predicted_mean"], expected.mean.numpy(), rtol=1e-6)
    record = json.loads(out_json.read_text())
    assert record["predictions"] == {
        "file": str(new), "predicted_quantity": "np.log1p(y)", "transformed_response": True
    }


def test_json_holds_version_priors_and_the_check(line_csv, tmp_path, capsys):
    """The priors as resolved ('auto': Normal(0, 2.5 sd(y) / sd(x)) with population sds,
    Exponential(1 / sd(y)), a flat intercept); the check report's k-hat is the one printed,
    and the PSIS-corrected table (drawn with the same seed) shows the same k-hat."""
    out_json = tmp_path / "fit.json"
    code, out, err = run(
        ["fit", line_csv, "--formula", "y ~ x", "--reweight", "--json", out_json], capsys
    )
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["noisybayes_version"] == nb.__version__
    table = pd.read_csv(line_csv)
    sd_y, sd_x = table["y"].std(ddof=0), table["x"].std(ddof=0)
    assert record["priors"]["intercept"] == "flat"
    assert record["priors"]["x"]["distribution"] == "Normal"
    assert record["priors"]["x"]["loc"] == 0.0
    assert record["priors"]["x"]["scale"] == pytest.approx(2.5 * sd_y / sd_x, rel=1e-9)
    assert record["priors"]["sigma"] == {"distribution": "Exponential",
                                         "rate": pytest.approx(1 / sd_y, rel=1e-9)}
    check = record["check"]
    assert check["reading"] == "good" and check["family"] == "fullrank"
    assert set(check["sd_ratio"]) == {"intercept", "x", "sigma"}
    khat = f"{check['khat']:.2f}"
    assert f"check: Pareto k-hat {khat} (good)" in out
    assert f"PSIS-corrected (--reweight, Pareto k-hat {khat}):" in out
    assert set(record["reweighted"]) == {"intercept", "x", "sigma"}
    moments = "psis-corrected" if "PSIS-corrected, the fit's k-hat" in out else "q"
    assert record["summary_moments"] == moments
    assert f"the fit's k-hat {record['fit_khat']:.2f}" in out
    for name in ("intercept", "x", "sigma"):  # a good fit: the weights change little
        ours, corrected = record["summary"][name], record["reweighted"][name]
        assert abs(corrected["mean"] - ours["mean"]) < 0.1 * ours["sd"], name


def test_advice_of_a_bad_fit_names_the_shell_flags(tmp_path, capsys):
    """A mean-field fit of two nearly collinear predictors (posterior correlation near -1,
    so its marginal sds are many times too small): the warning and the report show one
    k-hat, and the advice names flags, not Python calls."""
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=80)
    x2 = x1 + 0.05 * rng.normal(size=80)
    table = tmp_path / "collinear.csv"
    pd.DataFrame({"y": 1 + x1 + x2 + rng.normal(size=80), "x1": x1, "x2": x2}).to_csv(
        table, index=False
    )
    code, out, err = run(["fit", table, "--formula", "y ~ x1 + x2", "--family", "meanfield"],
                         capsys)
    assert code == 0
    khat = out.split("check: Pareto k-hat ")[1][:4]
    assert float(khat) > 0.7
    assert err == (
        f"noisybayes: warning: Pareto k-hat {khat} > 0.7: do not trust the meanfield "
        "approximation's means and sds (see 'check')\n"
    )
    advice = " ".join(out.split("mode search converged")[1].split())
    assert advice.startswith("marginal sds understated by up to")
    for flag in ("rerun with --family fullrank", "--family fullrank represents the correlations",
                 "--method exact gives this posterior exactly"):
        assert flag in advice, flag
    assert "family: meanfield (--family meanfield)" in out
    assert "post." not in out and "family='" not in out


def _report(khat: float, family: str, converged: bool = True) -> CheckReport:
    reading = "good" if khat < 0.5 else "usable" if khat <= 0.7 else "do not trust"
    return CheckReport(khat=khat, reading=reading, n_draws=1000, family=family,
                       converged=converged, convergence="", sd_ratio=None, recommendation="")


@pytest.mark.parametrize(
    ("khat", "family", "flags", "expected"),
    [
        (0.6, "fullrank", [],
         "Usable: rerun with --reweight for PSIS-corrected means and sds. --method exact "
         "gives this posterior exactly, with no approximation."),
        (0.6, "fullrank", ["--reweight", "--prior-scale", "none", "--noise-prior", "none"],
         "Usable: the PSIS-corrected means and sds above (--reweight) are the better summary. "
         "--method exact gives this posterior exactly, with no approximation."),
        (0.9, "fullrank", ["--likelihood", "student_t"],
         "Do not trust this fit: the posterior is far from Gaussian (heavy tails, skew or "
         "several modes); transform skewed columns in --formula (e.g. np.log(x)) or use MCMC."),
        (0.3, "lowrank", [], "Good: the approximation is close to the posterior."),
        (0.3, "lowrank", ["--max-steps", "300"],
         "Good: the approximation is close to the posterior. The optimisation did not "
         "converge: rerun with --max-steps larger than 300."),
    ],
)
def test_advice_by_reading(khat, family, flags, expected):
    args = build_parser().parse_args(["fit", "t.csv", "--formula", "y ~ x", *flags])
    converged = "--max-steps" not in flags
    assert advice(_report(khat, family, converged), args) == expected


def test_advice_says_when_the_summary_is_corrected_already():
    args = build_parser().parse_args(["fit", "t.csv", "--formula", "y ~ x", "--likelihood",
                                      "student_t"])
    assert advice(_report(0.6, "fullrank"), args, corrected=True) == (
        "Usable: the summary above is PSIS-corrected, the better summary.")


def test_fit_with_a_group_term_names_the_groups_and_predicts_a_new_one(capsys, tmp_path):
    """``(1 | soil)`` from the shell (a mean-field fit, for speed: the default full-rank fit
    of three soils raises its fixed draws to about 57,000, over a minute): the summary has a
    row per soil and the group sd, and a soil the fit never saw is predicted (from the
    population) rather than refused."""
    out_json, new, predictions = tmp_path / "fit.json", tmp_path / "new.csv", tmp_path / "p.csv"
    pd.DataFrame({"water": [1.0, 1.0], "light": [2.0, 2.0], "soil": ["loam", "peat"]}).to_csv(
        new, index=False)
    code, out, err = run(
        ["fit", example_path("plants"), "--formula", "growth ~ water + light + (1 | soil)",
         "--family", "meanfield", "--json", out_json, "--predict", new, "--out", predictions],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out_json.read_text())["summary"]
    assert {"water", "1|soil_sigma", "1|soil[clay]", "1|soil[loam]", "1|soil[<new>]"} <= set(
        summary)
    assert "1|soil[loam]" in out
    assert len(pd.read_csv(predictions)) == 2


def test_fit_with_a_varying_intercept_alone(capsys, tmp_path):
    """``y ~ 1 + (1 | g)`` from the shell (a mean-field fit, for speed): the summary is the
    intercept, the group sd, a row per group and the noise scale; a group the fit never saw
    is predicted from the population, so with a wider sd than a seen one."""
    data, new = tmp_path / "groups.csv", tmp_path / "new.csv"
    out_json, predictions = tmp_path / "fit.json", tmp_path / "p.csv"
    rng = np.random.default_rng(0)
    g = np.repeat(["a", "b", "c", "d"], 10)
    effect = pd.Series({"a": -0.6, "b": -0.2, "c": 0.2, "d": 0.6})[g].to_numpy()
    pd.DataFrame({"y": 1.0 + effect + rng.normal(0.0, 0.5, 40), "g": g}).to_csv(data, index=False)
    pd.DataFrame({"g": ["b", "new"]}).to_csv(new, index=False)
    code, out, err = run(
        ["fit", data, "--formula", "y ~ 1 + (1 | g)", "--family", "meanfield", "--json",
         out_json, "--predict", new, "--out", predictions], capsys,
    )
    assert code == 0, err
    assert list(json.loads(out_json.read_text())["summary"]) == [
        "intercept", "1|g_sigma", "1|g[a]", "1|g[b]", "1|g[c]", "1|g[d]", "1|g[<new>]", "sigma"]
    assert "1|g[<new>]" in out
    sd = pd.read_csv(predictions)["predicted_sd"]
    assert sd[1] > sd[0]
