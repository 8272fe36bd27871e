"""File sources (``nb.data.Parquet``, ``nb.data.CSV``): row counts, passes that yield every row
once in a reproducible shuffled order, shards that partition the rows, clear errors, the
streamed exact posterior, and the engine's ``Trainer`` reading from them."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import noisybayes as nb
from noisybayes.data.shuffle import buffered_shuffle
from noisybayes.engine import DataSource, LinearDecay, Trainer, load_state, save_state


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Rows numbered by ``id`` (a float column), two features and ``y = id * 10``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.float64),
        "a": rng.normal(size=n),
        "b": rng.integers(-5, 5, size=n),
        "y": np.arange(n, dtype=np.float64) * 10,
        "name": [f"r{i}" for i in range(n)],
    })


def _parquet(tmp_path, n: int = 103, files: int = 3, row_group_size: int = 9) -> str:
    """``files`` Parquet files of consecutive rows in row groups of ``row_group_size``."""
    frame = _frame(n)
    for k, part in enumerate(np.array_split(np.arange(n), files)):
        table = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        pq.write_table(table, tmp_path / f"part{k}.parquet", row_group_size=row_group_size)
    return str(tmp_path / "*.parquet")


def _csv(tmp_path, n: int = 57) -> str:
    _frame(n).to_csv(tmp_path / "rows.csv", index=False)
    return str(tmp_path / "rows.csv")


def _ids(batches) -> list[float]:
    return [v for inputs, _ in batches for v in inputs[0][:, 0].tolist()]


@pytest.fixture(params=["parquet", "csv"])
def source(request, tmp_path):
    """103 rows in 3 Parquet files of row groups of 9, or 57 rows in one CSV file."""
    if request.param == "parquet":
        return nb.data.Parquet(_parquet(tmp_path), x=["id", "a", "b"], y="y", buffer_rows=16)
    return nb.data.CSV(_csv(tmp_path), x=["id", "a", "b"], y="y", buffer_rows=16)


def test_row_count_is_known_before_any_pass_and_the_source_is_an_engine_source(tmp_path):
    parquet = nb.data.Parquet(_parquet(tmp_path), x=["a"], y="y")
    assert isinstance(parquet, DataSource)
    assert parquet.n_data == parquet.n_rows == 103 and len(parquet.pieces) == 3 * 4
    assert nb.data.CSV(_csv(tmp_path), x=["a"], y="y").n_data == 57


@pytest.mark.parametrize("batch_size", [1, 7, 16, 40, 1000])
def test_a_pass_yields_every_row_exactly_once_with_its_target(source, batch_size):
    batches = list(source.epoch(batch_size, torch.Generator().manual_seed(1), drop_last=False))
    assert Counter(_ids(batches)) == Counter(float(i) for i in range(source.n_rows))
    assert all(torch.equal(inputs[0][:, 0] * 10, y) for inputs, y in batches)
    sizes = [len(y) for _, y in batches]
    assert all(s == min(batch_size, source.n_rows) for s in sizes[:-1])


def test_drop_last_yields_only_full_batches(source):
    batches = list(source.epoch(10, torch.Generator().manual_seed(2), drop_last=True))
    assert [len(y) for _, y in batches] == [10] * (source.n_rows // 10)
    assert len(set(_ids(batches))) == source.n_rows // 10 * 10


def test_the_order_repeats_from_a_seed_and_changes_with_it(source):
    def order(seed: int) -> list[float]:
        return _ids(source.epoch(8, torch.Generator().manual_seed(seed), drop_last=False))

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != sorted(order(3))  # shuffled, not storage order


def test_rows_far_apart_in_the_files_can_share_a_batch(tmp_path):
    """Row groups are visited in a shuffled order: the first batch is not always drawn from
    the first buffer of rows."""
    source = nb.data.Parquet(_parquet(tmp_path), x=["id"], y="y", buffer_rows=9)
    firsts = {max(_ids([next(source.epoch(9, torch.Generator().manual_seed(s),
                                          drop_last=False))])) for s in range(10)}
    assert max(firsts) > 20


def test_the_shuffle_buffer_holds_at_most_its_capacity_plus_one_chunk():
    """Chunks are pulled lazily: rows read but not yet yielded stay below the bound."""
    pulled = 0

    def chunks():
        nonlocal pulled
        for start in range(0, 1000, 7):
            rows = torch.arange(start, min(start + 7, 1000))
            pulled += len(rows)
            yield rows

    yielded = []
    for batch in buffered_shuffle(chunks(), 5, 50, torch.Generator().manual_seed(0),
                                  drop_last=False):
        assert pulled - len(yielded) < 50 + 7
        yielded += batch.tolist()
    assert sorted(yielded) == list(range(1000)) and yielded != list(range(1000))


def test_shards_partition_the_rows_and_keep_the_whole_data_size(source):
    shards = [source.shard(rank, 3) for rank in range(3)]
    sizes = [s.n_rows for s in shards]
    assert sum(sizes) == source.n_rows and max(sizes) - min(sizes) <= 1
    assert {s.n_data for s in shards} == {source.n_rows}
    ids = [_ids(s.epoch(5, torch.Generator().manual_seed(0), drop_last=False)) for s in shards]
    assert [len(i) for i in ids] == sizes
    assert Counter(v for i in ids for v in i) == Counter(float(i) for i in range(source.n_rows))
    with pytest.raises(ValueError, match=r"^rank must be in \[0, 3\), got 3$"):
        source.shard(3, 3)
    with pytest.raises(ValueError, match=r"^world_size must be at most the source's"):
        source.shard(0, source.n_rows + 1)


def test_several_inputs_and_the_dtype(tmp_path):
    source = nb.data.Parquet(_parquet(tmp_path), x=(["id"], ["a", "b"]), y="y")
    (first, second), y = next(source.epoch(5, torch.Generator(), drop_last=False))
    assert first.shape == (5, 1) and second.shape == (5, 2) and y.shape == (5,)
    assert first.dtype == torch.float64  # a float64 column keeps its precision
    ints = nb.data.Parquet(_parquet(tmp_path), x=["b"], y="b", dtype=torch.float32)
    assert next(ints.epoch(5, torch.Generator(), drop_last=False))[1].dtype == torch.float32


def test_wide_integers_are_read_in_float64_as_in_memory(tmp_path):
    """int64 timestamps near 1.7e9: float32's spacing there is 128, so the 400 distinct
    values read in float32 collapsed to a few (a silently different fit than in memory,
    where they are float64); int16 and float32 columns alone stay in float32."""
    t = 1_700_000_000 + np.arange(400, dtype=np.int64)
    small = np.arange(400, dtype=np.int16)
    path = tmp_path / "stamps.parquet"
    pd.DataFrame({"t": t, "small": small, "f": small.astype(np.float32)}).to_parquet(path)
    source = nb.data.Parquet(path, x=["t"], y="small")
    x, _ = next(source.epoch(400, torch.Generator(), drop_last=False))
    assert x[0].dtype == torch.float64 and torch.unique(x[0]).numel() == 400
    narrow = nb.data.Parquet(path, x=["small"], y="f")
    assert next(narrow.epoch(5, torch.Generator(), drop_last=False))[1].dtype == torch.float32


def test_unknown_columns_are_named_and_many_are_shortened(tmp_path):
    path = _parquet(tmp_path)
    with pytest.raises(ValueError, match=r"^x must name columns of the data, got unknown "
                                         r"zz; the columns are id, a, b, y, name$"):
        nb.data.Parquet(path, x=["a", "zz"], y="y")
    with pytest.raises(ValueError, match=r"^y must name columns of the data, got unknown yy;"):
        nb.data.CSV(_csv(tmp_path), x=["a"], y="yy")
    many = [f"c{i}" for i in range(25)]
    with pytest.raises(ValueError, match=r"got unknown c0, c1, .*, c9 and 15 more;"):
        nb.data.Parquet(path, x=many, y="y")


def test_bad_arguments_are_refused_naming_them(tmp_path):
    path = _parquet(tmp_path)
    with pytest.raises(TypeError, match=r"^x must name numeric columns, got 'name' of type"):
        nb.data.Parquet(path, x=["a", "name"], y="y")
    with pytest.raises(TypeError, match=r"^x must be a non-empty list of column names"):
        nb.data.Parquet(path, x="a", y="y")
    with pytest.raises(TypeError, match=r"^y must be a column name \(a str\), got \['y'\]"):
        nb.data.Parquet(path, x=["a"], y=["y"])
    with pytest.raises(FileNotFoundError, match=r"^path_or_glob must match files, got"):
        nb.data.Parquet(str(tmp_path / "*.nothing"), x=["a"], y="y")
    with pytest.raises(FileNotFoundError, match=r"^path_or_glob must name an existing file"):
        nb.data.CSV(tmp_path / "missing.csv", x=["a"], y="y")
    with pytest.raises(ValueError, match=r"^buffer_rows must be an integer >= 1, got 0$"):
        nb.data.Parquet(path, x=["a"], y="y", buffer_rows=0)
    with pytest.raises(ValueError, match=r"^dtype must be torch.float32, torch.float64 or"):
        nb.data.Parquet(path, x=["a"], y="y", dtype=torch.int64)


def test_a_missing_value_is_an_error_naming_the_column_and_file(tmp_path):
    frame = _frame(10)
    frame.loc[4, "a"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    source = nb.data.CSV(tmp_path / "gap.csv", x=["a"], y="y")
    with pytest.raises(ValueError, match=r"^column 'a' of '.*gap.csv' must hold finite numbers"):
        list(source.epoch(3, torch.Generator(), drop_last=False))


def test_a_file_of_another_format_is_an_error_naming_it(tmp_path):
    (tmp_path / "fake.parquet").write_text("id,y\n1,2\n")
    with pytest.raises(ValueError, match=r"^path_or_glob '.*fake.parquet' could not be read as "
                                         r"parquet: "):
        nb.data.Parquet(tmp_path / "fake.parquet", x=["id"], y="y")


def test_a_file_that_differs_from_the_first_is_refused_before_any_pass(tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0], "y": [1.0, 2.0]}), tmp_path / "p0.parquet")
    pq.write_table(pa.table({"b": [1.0, 2.0], "y": [1.0, 2.0]}), tmp_path / "p1.parquet")
    with pytest.raises(ValueError, match=r"^every file must have the columns of x and y, got "
                                         r"'.*p1.parquet' without a$"):
        nb.data.Parquet(tmp_path / "*.parquet", x=["a"], y="y")
    pq.write_table(pa.table({"a": ["u", "v"], "y": [1.0, 2.0]}), tmp_path / "p1.parquet")
    with pytest.raises(TypeError, match=r"^x and y must name numeric columns in every file, got "
                                        r"'a' of type string in '.*p1.parquet'$"):
        nb.data.Parquet(tmp_path / "*.parquet", x=["a"], y="y")


def test_folder_keys_are_columns(tmp_path):
    for year in (2020, 2021):
        (tmp_path / f"year={year}").mkdir()
        frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0]})
        frame.to_parquet(tmp_path / f"year={year}" / "rows.parquet")
    source = nb.data.Parquet(tmp_path, x=["year", "a"], y="y")
    inputs, _ = next(source.epoch(6, torch.Generator(), drop_last=False))
    assert source.n_data == 6 and sorted(inputs[0][:, 0].tolist()) == [2020.0] * 3 + [2021.0] * 3


def test_without_pyarrow_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.dataset", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'noisybayes\[cli\]'"):
        nb.data.CSV(_csv(tmp_path), x=["a"], y="y")


def test_a_directory_is_read_whole(tmp_path):
    _parquet(tmp_path, n=40, files=4)
    assert nb.data.Parquet(tmp_path, x=["a"], y="y").n_data == 40


# --- the streamed exact posterior ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_streamed_exact_posterior_equals_the_in_memory_closed_form(tmp_path, kind):
    n = 500
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"one": 1.0, "a": rng.normal(size=n), "b": rng.normal(3, 2, size=n)})
    frame["y"] = 1.0 + 2.0 * frame["a"] - 0.5 * frame["b"] + rng.normal(0, 0.7, size=n)
    columns = ["one", "a", "b"]
    if kind == "parquet":
        pq.write_table(pa.Table.from_pandas(frame), tmp_path / "d.parquet", row_group_size=64)
        source = nb.data.Parquet(tmp_path / "d.parquet", x=columns, y="y", buffer_rows=50)
    else:
        frame.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
        source = nb.data.CSV(tmp_path / "d.csv", x=columns, y="y", buffer_rows=50)
    X = torch.tensor(frame[columns].to_numpy())
    y = torch.tensor(frame["y"].to_numpy())
    prior_loc, prior_precision = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.1, 2.0, 5.0])
    exact = nb.gaussian_linear_posterior(X, y, 0.7, prior_loc, prior_precision)
    streamed = nb.data.streamed_gaussian_linear_posterior(source, 0.7, prior_loc,
                                                          prior_precision, chunk_rows=37)
    assert streamed.loc.dtype == torch.float64
    torch.testing.assert_close(streamed.loc, exact.loc, rtol=0, atol=1e-10)
    torch.testing.assert_close(streamed.precision, exact.precision, rtol=1e-12, atol=1e-10)
    halves = [nb.data.streamed_gaussian_linear_posterior(source.shard(r, 2), 0.7)
              for r in range(2)]
    flat = nb.gaussian_linear_posterior(X, y, 0.7)
    torch.testing.assert_close(halves[0].precision + halves[1].precision, flat.precision,
                               rtol=1e-12, atol=1e-10)


def test_streamed_posterior_refuses_a_source_with_several_inputs(tmp_path):
    source = nb.data.Parquet(_parquet(tmp_path), x=(["id"], ["a"]), y="y")
    with pytest.raises(ValueError, match=r"^source must yield one input, a matrix X"):
        nb.data.streamed_gaussian_linear_posterior(source, 1.0)
    with pytest.raises(ValueError, match=r"^noise_scale must be > 0, got -1.0$"):
        nb.data.streamed_gaussian_linear_posterior(source, -1.0)


# --- the engine reads from a file source --------------------------------------------------
class _LeastSquares:
    """Half the mean squared residual of ``y = X beta``; minimised by ordinary least squares."""

    def __init__(self) -> None:
        self.beta = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.beta]

    def loss(self, batch) -> torch.Tensor:
        (X,), y = batch
        return 0.5 * (y - X @ self.beta).pow(2).mean()


def _line_file(tmp_path, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"one": 1.0, "a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["y"] = 0.5 + 1.5 * frame["a"] - 2.0 * frame["b"] + rng.normal(0, 0.1, size=n)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "d.parquet", row_group_size=50)
    return frame


def _trainer(tmp_path, objective: _LeastSquares) -> Trainer:
    source = nb.data.Parquet(tmp_path / "d.parquet", x=["one", "a", "b"], y="y", buffer_rows=64)
    return Trainer(objective, source, LinearDecay(0.05, 600, 25), batch_size=32,
                   generator=torch.Generator().manual_seed(0), max_steps=600)


def test_the_trainer_runs_on_a_parquet_source(tmp_path):
    n = 400
    frame = _line_file(tmp_path, n)
    objective = _LeastSquares()
    result = _trainer(tmp_path, objective).run()
    assert result.n_steps == 600 and result.n_epochs == pytest.approx(600 / (n // 32))
    X = torch.tensor(frame[["one", "a", "b"]].to_numpy())
    ols = torch.linalg.lstsq(X, torch.tensor(frame["y"].to_numpy())[:, None]).solution[:, 0]
    # Adam's last iterate at step 0.005 jitters by about the step size around the optimum
    torch.testing.assert_close(objective.beta.detach(), ols, rtol=0, atol=0.05)


def test_a_trainer_on_a_file_source_resumes_mid_pass_bit_identical(tmp_path):
    _line_file(tmp_path)
    whole = _trainer(tmp_path, _LeastSquares())
    whole.run()
    first = _trainer(tmp_path, _LeastSquares())
    assert first.run(until=105) is None  # inside the 9th pass of 12 batches
    save_state(first.state_dict(), tmp_path / "fit.pt")
    objective = _LeastSquares()
    resumed = _trainer(tmp_path, objective)
    resumed.load_state_dict(load_state(tmp_path / "fit.pt"))
    resumed.run()
    assert resumed.trace == whole.trace
    assert torch.equal(objective.beta.detach(), whole.objective.parameters()[0].detach())
