"""``nb.fit`` and ``nb.nn.train`` from a data source: the fit streams minibatches and whole-data
statistics from a Parquet file, and reaches the exact posterior and the in-memory fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.distributions import Normal

import noisybayes as nb
from noisybayes.engine.source import TensorSource

NOISE = 0.5
PRIOR_SCALE = 10.0


class Line(nb.Model):
    """``y ~ N(x @ beta, 0.5^2)`` with ``beta ~ N(0, 10^2)``: the conjugate posterior is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), PRIOR_SCALE),
                             shape=(3,))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, NOISE)


def _write(tmp_path, n: int = 4000) -> pd.DataFrame:
    """An intercept and two strongly correlated, uncentred features (mean-field would be far
    off), in row groups of 500."""
    rng = np.random.default_rng(0)
    a = rng.normal(2.0, 1.0, n)
    frame = pd.DataFrame({"one": 1.0, "a": a, "b": a + rng.normal(0.0, 0.5, n)})
    frame["y"] = 1.0 + 0.5 * frame["a"] - 0.8 * frame["b"] + rng.normal(0.0, NOISE, n)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "rows.parquet", row_group_size=500)
    return frame


def _source(tmp_path, x=("one", "a", "b")):
    columns = list(x) if isinstance(x[0], str) else x
    return nb.data.Parquet(tmp_path / "rows.parquet", x=columns, y="y", buffer_rows=1024)


def test_a_streamed_fit_reaches_the_exact_posterior_and_the_in_memory_fit(tmp_path):
    """Minibatches of 500 rows from the file, the Laplace start on a subsample of about 1,000
    rows (so its curvature is a few percent off and the fit must learn the scales).

    Tolerances: the posterior is Gaussian, so what is left is stochastic optimisation. In
    whitened coordinates (units of posterior sd, unit curvature) Adam at its final step
    ``eta = 0.005`` acts at stationarity as SGD at ``eta / s``, ``s`` the sd of the gradient
    noise (at most about 1 here: the SVRG anchor sits at the mode and the Taylor control
    variate removes the quadratic); SGD's iterates then scatter by ``sqrt(eta s / 2) <= 0.05``
    around the optimum with an autocorrelation time of ``s / eta <= 200`` steps, and the
    answer averages 400 iterates, at least two such times: a standard error of at most
    ``0.05 / sqrt(2) = 0.035`` sd. 0.1 sd is then a 3-sigma bound in the worst case. The
    log-scales have curvature 2 in these units, so relative sd errors are bounded by 5%.
    The in-memory fit (fixed-draw L-BFGS) is within 0.02 sd of exact by its own tolerance,
    so the two fits agree within 0.1 + 0.02 sd.
    """
    frame = _write(tmp_path)
    source = _source(tmp_path)
    exact = nb.data.streamed_gaussian_linear_posterior(source, NOISE, 0.0,
                                                       PRIOR_SCALE**-2)
    post = nb.fit(Line(), source, seed=0, batch_size=500, max_curvature_rows=1000,
                  progress=False)
    assert post.info.solver == "adam" and post.info.n_data == 4000 and post.data is None
    assert post.info.batch_size == 500 and post.info.converged
    assert "x is a data source" in post.info.reason and "subsample of" in post.info.reason
    assert post.info.khat is not None and post.info.khat < 0.7
    z = (post.mean["beta"] - exact.loc) / exact.scale
    assert z.abs().max() < 0.1, z
    assert (post.sd["beta"] / exact.scale - 1).abs().max() < 0.05

    x = torch.tensor(frame[["one", "a", "b"]].to_numpy())
    in_memory = nb.fit(Line(), x, torch.tensor(frame["y"].to_numpy()), seed=0, progress=False)
    gap = (post.mean["beta"] - in_memory.mean["beta"]) / in_memory.sd["beta"]
    assert gap.abs().max() < 0.12, gap
    assert (post.sd["beta"] / in_memory.sd["beta"] - 1).abs().max() < 0.05 + 0.02


def test_a_streamed_fit_is_reproducible_from_its_seed(tmp_path):
    _write(tmp_path, n=600)
    fits = [nb.fit(Line(), _source(tmp_path), seed=3, batch_size=200, max_curvature_rows=300,
                   family="fullrank", max_steps=100, progress=False) for _ in range(2)]
    assert torch.equal(fits[0].mean["beta"], fits[1].mean["beta"])
    assert torch.equal(fits[0].info.loss_trace, fits[1].info.loss_trace)


def test_bad_arguments_with_a_source_are_refused_naming_them(tmp_path):
    _write(tmp_path, n=200)
    source = _source(tmp_path)
    two_inputs = _source(tmp_path, x=(["one"], ["a", "b"]))
    with pytest.raises(ValueError, match=r"^x must yield the inputs of Line.forward\(x\), got "
                                         r"a data source yielding 2 input\(s\) of shapes "
                                         r"\(B, 1\), \(B, 2\); one list of columns"):
        nb.fit(Line(), two_inputs, progress=False)
    with pytest.raises(ValueError, match=r"^y must be None when x is a data source"):
        nb.fit(Line(), source, torch.zeros(200), progress=False)
    with pytest.raises(ValueError, match=r"with x a data source of more than "
                                         r"max_curvature_rows rows, or under torch.distributed, "
                                         r"solver must be 'auto' or 'adam' .* got "
                                         r"solver='lbfgs', batch_size='auto' for 200 rows and "
                                         r"max_curvature_rows=100$"):
        nb.fit(Line(), source, solver="lbfgs", max_curvature_rows=100, progress=False)
    with pytest.raises(ValueError, match=r"got solver='auto', batch_size=None for 200 rows"):
        nb.fit(Line(), source, batch_size=None, max_curvature_rows=100, progress=False)
    for whole in ({"solver": "lbfgs"}, {"batch_size": None}):  # 200 rows: read whole
        post = nb.fit(Line(), source, seed=0, progress=False, **whole)
        # the rows are in the pass's order, so the posterior keeps none (as from any source)
        assert post.info.solver == "lbfgs" and post.data is None
    with pytest.raises(ValueError, match=r"^y must be given when x is a tensor"):
        nb.fit(Line(), torch.zeros(5, 3))
    empty = TensorSource((torch.zeros(0, 3, dtype=torch.float64),), torch.zeros(0))
    with pytest.raises(ValueError, match=r"^x must be a data source with rows, got one of 0 rows$"):
        nb.fit(Line(), empty, progress=False)
    nan_rows = TensorSource((torch.ones(5, 3, dtype=torch.float64),),
                            torch.tensor([0.0, float("nan"), 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"^y must be finite, .* \(in the order of the "
                                         r"source's pass\)$"):
        nb.fit(Line(), nan_rows, progress=False)
    with pytest.raises(ValueError, match=r"^max_curvature_rows must be an integer >= 1, got 0$"):
        nb.fit(Line(), source, max_curvature_rows=0)
    with pytest.raises(ValueError, match=r"^x must be a whole data source, got a shard of "
                                         r"100 of its 200 rows"):
        nb.fit(Line(), source.shard(0, 2), progress=False)
    with pytest.raises(ValueError, match=r"^x must be a whole data source"):
        nb.nn.train(_network(), source.shard(1, 2), likelihood=nb.nn.Gaussian(), n_epochs=1,
                    progress=False)


# --- nb.nn.train from a data source -------------------------------------------------------
def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # the layer's initial weights
    return nb.nn.bayesian(torch.nn.Linear(2, 1))


def test_train_from_an_engine_source_equals_train_from_its_tensors():
    """A source is read through the same loop: an in-memory one gives the identical run."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(90, 2, generator=g), torch.randn(90, generator=g)
    runs = [nb.nn.train(_network(), *data, likelihood=nb.nn.Gaussian(), n_epochs=3,
                        batch_size=16, generator=torch.Generator().manual_seed(1),
                        progress=False)
            for data in ((x, y), (nb.engine.TensorSource((x,), y),))]
    assert torch.equal(runs[0].info.loss_trace, runs[1].info.loss_trace)
    assert runs[0].info.n_steps == runs[1].info.n_steps == 3 * 6


def test_train_reads_minibatches_from_a_parquet_file(tmp_path):
    """float64 columns reach a float32 network, whose weight means approach the exact
    posterior means (known noise 0.5, the layer's prior N(0, 1); posterior sds about 0.045).

    Tolerance: the answer is Adam's last iterate. Near the optimum a step moves each weight by
    at most about the step size, 0.005 at the end (0.05 decayed to a tenth), 0.11 posterior
    sd here; a last iterate within 4 such steps of the optimum is within 0.45 sd. The learned
    noise scale leaves a linear-Gaussian posterior mean unchanged but for the prior's pull,
    under 0.05 sd on 600 rows: 0.5 sd in all.
    """
    frame = _write(tmp_path, n=600)
    source = nb.data.Parquet(tmp_path / "rows.parquet", x=["a", "b"], y="y")
    network = _network()
    post = nb.nn.train(network, source, likelihood=nb.nn.Gaussian(), n_epochs=40,
                       batch_size=60, learning_rate=0.05,
                       generator=torch.Generator().manual_seed(0), progress=False)
    assert post.info.n_data == 600 and post.info.n_steps == 40 * 10 and post.data is None
    X = torch.tensor(frame[["one", "a", "b"]].to_numpy())
    exact = nb.gaussian_linear_posterior(X, torch.tensor(frame["y"].to_numpy()), NOISE, 0.0,
                                         1.0)
    fitted = torch.cat([network.bias_loc.detach(), network.weight_loc.detach()[0]]).double()
    z = (fitted - exact.loc) / exact.scale
    assert z.abs().max() < 0.5, z
    with pytest.raises(ValueError, match=r"^y must be None when x is a data source"):
        nb.nn.train(_network(), source, torch.zeros(600), likelihood=nb.nn.Gaussian(),
                    n_epochs=1)
    two = nb.data.Parquet(tmp_path / "rows.parquet", x=(["a"], ["b"]), y="y")
    with pytest.raises(ValueError, match=r"^x must yield one input for the network, got a data "
                                         r"source yielding 2 inputs of shapes"):
        nb.nn.train(_network(), two, likelihood=nb.nn.Gaussian(), n_epochs=1)


def test_the_subsample_keeps_distinct_rows_of_the_file_in_the_expected_number(tmp_path):
    """About ``n`` of the 4,000 rows (a binomial count: within 4 sds), each a row of the
    file and none twice, also when the buffers must grow past their first size; all rows
    when ``n`` is their number or more; the first row read when the pass keeps none."""
    from noisybayes.infer.streamed import subsample

    frame = _write(tmp_path)
    source = _source(tmp_path)
    known = {tuple(row) for row in frame[["one", "a", "b", "y"]].to_numpy().round(9)}
    for n in (50, 1000):
        (x,), y = subsample(source, n, torch.Generator().manual_seed(1))
        rows = {tuple(r) for r in torch.cat([x, y[:, None]], 1).numpy().round(9)}
        assert len(rows) == len(y) and rows <= known
        assert abs(len(y) - n) < 4 * np.sqrt(n * (1 - n / 4000))
    (x,), y = subsample(source, 4000, torch.Generator().manual_seed(1))
    assert len(y) == 4000 and {tuple(r) for r in torch.cat([x, y[:, None]], 1).numpy().round(
        9)} == known
    tiny = subsample(source, 1, torch.Generator().manual_seed(0))  # keep 1/4000 per row
    assert tiny[1].shape[0] >= 1
    (x,), y = subsample(source, 1000, torch.Generator().manual_seed(1), capacity=16)
    rows = {tuple(r) for r in torch.cat([x, y[:, None]], 1).numpy().round(9)}
    assert len(rows) == len(y) > 16 and rows <= known
