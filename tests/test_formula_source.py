"""A formula's design streamed from files (``noisybayes.tables.formula_source``) and
``noisybayes fit --stream``: the design learned from the first chunk, applied to every chunk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import noisybayes as nb
from noisybayes.cli.main import EXIT_INPUT, main
from noisybayes.tables.formula_source import formula_source

FORMULA = "y ~ x + C(g) + np.log(z)"
FLAT = {"method": "exact", "prior_scale": None, "noise_prior": None}


def _frame(n: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(5.0, 2.0, n), "g": rng.choice(["a", "b", "c"], n),
                          "z": rng.uniform(1.0, 3.0, n)})
    frame["y"] = (1.0 + 0.5 * frame["x"] + frame["g"].map({"a": 0.0, "b": 1.0, "c": -1.0})
                  + np.log(frame["z"]) + rng.normal(0.0, 1.0, n))
    return frame


def _write(path, frame: pd.DataFrame) -> str:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=300)
    return str(path)


def test_the_exact_fit_from_a_formula_source_is_the_in_memory_one(tmp_path):
    """The same design, the same equations: equal to rounding (see
    test_estimators_streamed.py for the 1e-10 sd bound)."""
    frame = _frame()
    source = formula_source(_write(tmp_path / "rows.parquet", frame), FORMULA, buffer_rows=256)
    assert source.n_data == 1200 and source.inputs == (("x", "C(g)[T.b]", "C(g)[T.c]",
                                                        "np.log(z)"),)
    streamed = nb.BayesianLinearRegression(**FLAT).fit(source)
    in_memory = nb.BayesianLinearRegression.from_formula(FORMULA, frame, **FLAT)
    for name, sd in in_memory.posterior_.sd.items():
        gap = (streamed.posterior_.mean[name] - in_memory.posterior_.mean[name]) / sd
        assert gap.abs().max() < 1e-10, (name, gap)
    assert list(streamed.summary().index) == list(in_memory.summary().index)
    new = frame.iloc[:7]  # raw rows: the formula builds their design
    np.testing.assert_allclose(streamed.predict(new), in_memory.predict(new), rtol=1e-10)


def test_rows_that_do_not_fit_the_first_chunks_design_are_refused(tmp_path):
    frame = _frame(600)
    frame.loc[:299, "g"] = "a"  # the first row group (and chunk) holds one level only
    path = _write(tmp_path / "rows.parquet", frame)
    with pytest.raises(ValueError, match=r"rows of .*rows\.parquet' must fit the design learned "
                                         r"from the first chunk of rows: data must only hold "
                                         r"categories seen at fit time, got 'b', 'c'"):
        nb.BayesianLinearRegression(**FLAT).fit(formula_source(path, "y ~ x + C(g)",
                                                              buffer_rows=300))
    frame = _frame(600)
    frame.loc[450, "x"] = np.nan
    path = _write(tmp_path / "missing.parquet", frame)
    with pytest.raises(ValueError, match=r"must have no missing values in the formula's "
                                         r"columns, .*x: 1"):
        nb.BayesianLinearRegression(**FLAT).fit(formula_source(path, "y ~ x", buffer_rows=300))
    with pytest.raises(ValueError, match=r"formula must have no group terms \(\(x \| g\)\) to "
                                         r"be streamed from files, got 'y ~ x \+ \(1 \| g\)'"):
        formula_source(path, "y ~ x + (1 | g)")
    with pytest.raises(ValueError, match="formula must use columns of the table, got unknown "
                                         "column 'w'"):
        formula_source(path, "y ~ w")
    with pytest.raises(ValueError, match=r"fit_intercept must be False for a source of the "
                                         r"formula 'y ~ x - 1' \(its intercept\), got True"):
        nb.BayesianLinearRegression(**FLAT).fit(formula_source(path, "y ~ x - 1"))


def test_the_shell_streams_with_stream(tmp_path, capsys):
    """Exit codes and the printed summary: the streamed exact posterior's means are the
    in-memory run's (printed to 4 significant digits)."""
    path = _write(tmp_path / "rows.parquet", _frame())
    flags = ["--method", "exact", "--prior-scale", "none", "--noise-prior", "none"]
    assert main(["fit", path, "--formula", FORMULA, *flags]) == 0
    in_memory = capsys.readouterr().out
    assert main(["fit", path, "--formula", FORMULA, *flags, "--stream"]) == 0
    out = capsys.readouterr().out
    assert "streamed]" in out and "rows: 1200, read from the files" in out
    labels = ("intercept", "x", "C(g)[T.b]", "C(g)[T.c]", "np.log(z)", "sigma")
    assert _means(out, labels) == _means(in_memory, labels)
    (tmp_path / "a.png").write_text("kept")  # the flag is refused first, not the file
    code = main(["fit", path, "--formula", FORMULA, "--stream", "--plot", str(tmp_path / "a.png")])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT
    assert "--plot is not available with --stream: it needs the rows in memory" in err
    assert (tmp_path / "a.png").read_text() == "kept"
    code = main(["fit", str(tmp_path / "rows.txt"), "--formula", FORMULA, "--stream"])
    assert code == EXIT_INPUT and "--stream reads .parquet, .pq, .csv" in capsys.readouterr().err


def _means(out: str, labels: tuple[str, ...]) -> dict[str, str]:
    """The printed mean of each row of the summary named in ``labels``."""
    rows = [line.split() for line in out.splitlines()]
    means = {row[0]: row[1] for row in rows if len(row) > 1 and row[0] in labels}
    assert set(means) == set(labels), means
    return means


def test_a_classifier_from_a_formula_source_keeps_the_label_columns_type(tmp_path):
    """0/1 integer labels, named bare or quoted (``Q("lab col")``), give integer ``classes_``
    and predictions, as the same formula on the table in memory does."""
    frame = _frame(300)
    frame["lab col"] = (frame["y"] > frame["y"].median()).astype(int)
    path = _write(tmp_path / "labels.parquet", frame.rename(columns={"lab col": "lab"})
                  .assign(**{"lab col": frame["lab col"]}))
    for response in ("lab", "Q('lab col')"):
        clf = nb.BayesianGLMClassifier(progress=False).fit(
            formula_source(path, f"{response} ~ x"))
        assert clf.classes_.dtype.kind == "i" and list(clf.classes_) == [0, 1], response
        assert clf.predict(frame.iloc[:5]).dtype.kind == "i"


def test_a_formula_source_reads_a_label_response_as_the_classifier_does(tmp_path):
    """``response="labels"``: a boolean column is a classifier's response, as
    ``from_formula`` takes it (the numeric default refuses it); a transformed response is
    refused, naming it."""
    frame = _frame(300)
    frame["flag"] = frame["y"] > frame["y"].median()
    path = _write(tmp_path / "flags.parquet", frame)
    with pytest.raises(ValueError, match=r"^the response column 'flag' must be numeric"):
        formula_source(path, "flag ~ x")
    source = formula_source(path, "flag ~ x", response="labels")
    streamed = nb.BayesianGLMClassifier(progress=False).fit(source)
    in_memory = nb.BayesianGLMClassifier.from_formula("flag ~ x", frame, progress=False)
    assert list(streamed.classes_) == [False, True] and streamed.classes_.dtype == bool
    assert list(streamed.predict(frame.iloc[:20])) == list(in_memory.predict(frame.iloc[:20]))
    with pytest.raises(ValueError, match=r"^formula must have one column of class labels"):
        formula_source(path, "np.log(z) ~ x", response="labels")
