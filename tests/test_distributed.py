"""Data-parallel fits under ``torch.distributed``: two processes on the loopback address.

Two processes started once with the gloo backend (``torch.multiprocessing``'s spawn) run
every task in turn (start-up costs more than the tasks), each process holding every other
row of one data set (the estimators' tasks: the first 120 rows and the last 80); the tests compare what they return with each other and with one
process fitting all rows. A process that does not finish within ``_TIMEOUT`` seconds fails
the tests instead of blocking them.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributions import HalfNormal, Normal

import noisybayes as nb
from noisybayes.engine.distributed import World
from tests.reference_models import Regression
from tests.test_conjugate_fit import KnownNoiseLine

_TIMEOUT = 300.0  # seconds for both processes and every task, start-up (imports) included
_WORLD = 2


def _line(d: int) -> Regression:
    """``y ~ Normal(x @ beta, sigma)``, ``beta ~ N(0, 10)``, ``sigma ~ HalfNormal(5)``."""
    f64 = torch.float64
    return Regression(d, Normal(torch.tensor(0.0, dtype=f64), 10.0),
                      HalfNormal(torch.tensor(5.0, dtype=f64)))


def _rows(n: int = 200, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + 0.5
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    return x, y + 0.7 * torch.randn(n, generator=g, dtype=torch.float64)


def _moments(post: Any) -> dict[str, torch.Tensor]:
    """The fitted family's mean and variance over the unconstrained parameters."""
    return {"loc": post.family.mean().detach(), "variance": post.family.variance().detach()}


# --- what each process runs (module level, so spawn can import it) ---------------------
def _fit(rank: int, size: int, folder: Path) -> dict[str, Any]:
    x, y = _rows()
    post = nb.fit(_line(3), x[rank::size], y[rank::size], seed=5)
    return {**_moments(post), "n_data": post.info.n_data, "khat": post.info.khat,
            "solver": post.info.solver, "trace": post.info.loss_trace}


def _adam(rank: int, size: int, folder: Path) -> dict[str, Any]:
    x, y = _rows()
    post = nb.fit(_line(3), x[rank::size], y[rank::size], seed=5, solver="adam",
                  batch_size=25, family="fullrank", max_steps=2000)
    return {**_moments(post), "steps": post.info.n_steps}


def _adam_resumed(rank: int, size: int, folder: Path) -> dict[str, Any]:
    """``_adam``'s fit stopped in its third window (after the checkpoint at step 200), then
    restarted from the checkpoint."""
    from tests.test_checkpoint import Stop, Windows

    x, y = _rows()
    settings: dict[str, Any] = {"seed": 5, "solver": "adam", "batch_size": 25,
                                "family": "fullrank", "max_steps": 2000,
                                "checkpoint": folder / "fit.pt", "checkpoint_every": 200}
    stopped = False
    try:
        nb.fit(_line(3), x[rank::size], y[rank::size], callback=Windows(stop_at=3), **settings)
    except Stop:
        stopped = True
    windows = Windows()
    post = nb.fit(_line(3), x[rank::size], y[rank::size], callback=windows, **settings)
    return {**_moments(post), "steps": post.info.n_steps, "stopped": stopped,
            "windows": windows.seen}


def _bad_rows(rank: int, size: int, folder: Path) -> dict[str, Any]:
    x, y = _rows()
    y = y[rank::size].clone()
    if rank == 1:
        y[3] = math.nan
    nb.fit(_line(3), x[rank::size], y, seed=5)
    return {}


def _network(rank: int, size: int, folder: Path) -> dict[str, Any]:
    x, y = _rows()
    torch.manual_seed(rank)  # different initial weights: process 0's must win
    net = nb.bayesian(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                          torch.nn.Linear(8, 1)))
    post = nb.nn.train(net, x[rank::size].float(), y[rank::size, None].float(),
                       likelihood=nb.nn.Gaussian(), n_epochs=5, batch_size=20,
                       generator=torch.Generator().manual_seed(0))
    return {"weights": [p.detach().clone() for p in net.parameters()],
            "trace": post.info.loss_trace, "n_data": post.info.n_data}


def _write_parquet(folder: Path, n: int = 4000) -> Path:
    """An intercept and two correlated, uncentred features, in row groups of 500."""
    rng = np.random.default_rng(0)
    a = rng.normal(2.0, 1.0, n)
    b = a + rng.normal(0.0, 0.5, n)
    table = pa.table({"one": np.ones(n), "a": a, "b": b,
                      "y": 1.0 + 0.5 * a - 0.8 * b + rng.normal(0.0, 1.0, n)})
    pq.write_table(table, folder / "rows.parquet", row_group_size=500)
    return folder / "rows.parquet"


def _parquet_source(folder: Path) -> Any:
    return nb.data.Parquet(folder / "rows.parquet", x=["one", "a", "b"], y="y",
                           buffer_rows=1024)


def _parquet(rank: int, size: int, folder: Path) -> dict[str, Any]:
    post = nb.fit(KnownNoiseLine(3), _parquet_source(folder), seed=0, batch_size=250,
                  max_curvature_rows=1000, progress=False)
    return {**_moments(post), "n_data": post.info.n_data, "solver": post.info.solver}


def _bad_source(rank: int, size: int, folder: Path) -> dict[str, Any]:
    nb.fit(KnownNoiseLine(3), nb.data.Parquet(folder / "bad.parquet", x=["one", "a", "b"],
                                              y="y"), seed=0, progress=False)
    return {}


def _bad_source_network(rank: int, size: int, folder: Path) -> dict[str, Any]:
    """``nb.nn.train`` reads its rows batch by batch: the NaN reaches process 1 in a
    training step, where process 0 is already in the step's all-reduce."""
    net = nb.bayesian(torch.nn.Linear(3, 1))
    nb.nn.train(net, nb.data.Parquet(folder / "bad.parquet", x=["one", "a", "b"], y="y"),
                likelihood=nb.nn.Gaussian(), n_epochs=1, batch_size=250,
                generator=torch.Generator().manual_seed(0))
    return {}


def _checkpoint(rank: int, size: int, folder: Path) -> dict[str, Any]:
    """A network run stopped in step 13 on both processes, after the checkpoint of step 10,
    then restarted; and the same run without a stop. The processes hold 120 and 80 rows
    (6 and 4 batches a pass, 6 steps a pass for both), so their places in their passes and
    their generators part: each must resume from its own state."""
    from tests.test_checkpoint import Stop, StoppingGaussian

    x, y = _rows()
    mine = slice(0, 120) if rank == 0 else slice(120, 200)
    x, y = x[mine], y[mine]
    path = folder / "network.pt"

    def run(likelihood: nb.nn.Likelihood, **kwargs: Any) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = nb.bayesian(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                              torch.nn.Linear(8, 1)))
        nb.nn.train(net, x.float(), y[:, None].float(), likelihood=likelihood, n_epochs=5,
                    batch_size=20, generator=torch.Generator().manual_seed(0), **kwargs)
        return [p.detach().clone() for p in net.parameters()]

    whole = run(nb.nn.Gaussian())
    stopped = False
    try:
        run(StoppingGaussian(calls=13), checkpoint=path, checkpoint_every=5)
    except Stop:
        stopped = True
    counting = StoppingGaussian(calls=1000)
    resumed = run(counting, checkpoint=path, checkpoint_every=5)
    return {"stopped": stopped, "steps": 1000 - counting.calls,
            "same": all(torch.equal(a, b) for a, b in zip(whole, resumed, strict=True))}


_EXACT = [{"method": "exact", "prior_scale": None, "noise_prior": None},  # Normal-Inv.-Gamma
          {"method": "exact", "noise_scale": 0.7}]  # known noise, the "auto" Normal prior
_SPLIT = 120  # process 0 holds rows [0, 120), process 1 the other 80


def _fitted(estimator: Any) -> dict[str, Any]:
    """An estimator's fitted attributes and its posterior's mean and variance over the
    unconstrained parameters."""
    post = estimator.posterior_
    return {"coef": estimator.coef_, "intercept": estimator.intercept_,
            "mean": post.family.mean().detach(), "variance": post.family.variance().detach(),
            "named": {k: v.detach() for k, v in post.mean.items()}}


def _labelled() -> tuple[np.ndarray, np.ndarray]:
    """``_rows``'s x with labels ``"high"`` where y is above its median, sorted by label, so
    that the rows past ``_SPLIT`` (process 1's) hold one class only."""
    x, y = _rows()
    labels = np.where(y.numpy() > float(y.median()), "high", "low")
    order = np.argsort(labels == "high", kind="stable")[::-1].copy()  # "high" first
    return x.numpy()[order], labels[order]


def _estimator_exact(rank: int, size: int, folder: Path) -> dict[str, Any]:
    x, y = _rows()
    mine = slice(0, _SPLIT) if rank == 0 else slice(_SPLIT, None)
    return {"fits": [_fitted(nb.BayesianLinearRegression(**options).fit(
        x[mine].numpy(), y[mine].numpy())) for options in _EXACT]}


def _estimator_vi(rank: int, size: int, folder: Path) -> dict[str, Any]:
    x, labels = _labelled()
    mine = slice(0, _SPLIT) if rank == 0 else slice(_SPLIT, None)
    clf = nb.BayesianGLMClassifier(progress=False).fit(x[mine], labels[mine])
    return {**_fitted(clf), "classes": clf.classes_.tolist(), "khat": clf.posterior_.info.khat,
            "local": np.unique(labels[mine]).tolist()}


def _estimator_source(rank: int, size: int, folder: Path) -> dict[str, Any]:
    source = nb.data.Parquet(folder / "rows.parquet", x=["a", "b"], y="y", buffer_rows=1024)
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    return _fitted(reg.fit(source))


def _estimator_refused(rank: int, size: int, folder: Path) -> dict[str, Any]:
    """What cannot be fitted data-parallel, each refused on every process: a network
    estimator, a formula, a flat prior for labels (separation needs all rows at once),
    arrays of other widths on the processes; the errors caught here, by type and message."""
    x, labels = _labelled()
    mine = slice(0, _SPLIT) if rank == 0 else slice(_SPLIT, None)
    table = pd.DataFrame({"a": x[mine, 0], "b": x[mine, 1], "label": labels[mine] == "high"})
    attempts = {
        "network": lambda: nb.BNNRegressor(hidden=4).fit(x[mine], x[mine, 0]),
        "formula": lambda: nb.BayesianGLMClassifier.from_formula("label ~ a + b", table),
        "flat": lambda: nb.BayesianGLMClassifier(prior_scale=None).fit(x[mine], labels[mine]),
        "width": lambda: nb.BayesianGLMClassifier().fit(x[mine, : 3 - rank], labels[mine]),
        "dtype": lambda: nb.BayesianGLMClassifier().fit(
            x[mine].astype(np.float32 if rank else np.float64), labels[mine]),
        "kinds": lambda: nb.BayesianGLMClassifier().fit(
            x[mine], labels[mine] if rank == 0 else np.ones(len(labels[mine]), dtype=int)),
        "nan": lambda: nb.BayesianGLM("poisson").fit(
            np.where(rank == 1 and np.arange(len(x[mine]))[:, None] == 3, np.nan, x[mine]),
            np.ones(len(x[mine]))),
    }
    errors = {}
    for name, attempt in attempts.items():
        try:
            attempt()
        except Exception as error:
            errors[name] = (type(error).__name__, str(error))
    return errors


def _same_rows(rank: int, size: int, folder: Path) -> dict[str, Any]:
    """Every process passes all 200 rows (the mistake of a script written for one)."""
    x, y = _rows()
    nb.fit(_line(3), x, y, seed=5)
    return {}


def _crash(rank: int, size: int, folder: Path) -> dict[str, Any]:
    """Process 1 dies without a word (as on a lost machine); process 0 fits on."""
    if rank == 1:
        os._exit(3)
    x, y = _rows()
    nb.fit(_line(3), x[rank::size], y[rank::size], seed=5)
    return {}


_TASKS = {"fit": _fit, "bad_rows": _bad_rows, "adam": _adam, "adam_resumed": _adam_resumed,
          "network": _network,
          "parquet": _parquet, "checkpoint": _checkpoint, "estimator_exact": _estimator_exact,
          "estimator_vi": _estimator_vi, "estimator_source": _estimator_source,
          "estimator_refused": _estimator_refused,
          "same_rows": _same_rows, "bad_source": _bad_source,
          "bad_source_network": _bad_source_network,
          "crash": _crash}  # the crash last: it ends the group


def _worker(rank: int, size: int, port: int, folder: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size, timeout=timedelta(seconds=_TIMEOUT))
    outs: dict[str, dict[str, Any]] = {}
    for task, run in _TASKS.items():  # after a task that failed everywhere, the next goes on
        try:
            outs[task] = {"result": run(rank, size, Path(folder))}
        except Exception as error:
            outs[task] = {"error": type(error).__name__, "message": str(error),
                          "traceback": traceback.format_exc()}
        torch.save(outs, Path(folder) / f"{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, Any]]]:
    """Every task on two processes: per process, per task, ``{"result": ...}`` or
    ``{"error": ..., "message": ...}``."""
    folder = tmp_path_factory.mktemp("distributed")
    table = pq.read_table(_write_parquet(folder)).to_pandas()
    table.loc[3000, "y"] = math.nan
    pq.write_table(pa.Table.from_pandas(table), folder / "bad.parquet", row_group_size=500)
    context = mp.get_context("spawn")
    port = _free_port()
    procs = [context.Process(target=_worker, args=(r, _WORLD, port, str(folder)))
             for r in range(_WORLD)]
    deadline = time.monotonic() + _TIMEOUT
    for p in procs:
        p.start()
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"process(es) {hung} did not finish within {_TIMEOUT} s"
    return [torch.load(folder / f"{r}.pt", weights_only=False) for r in range(_WORLD)]


def _results(runs: list[dict[str, dict[str, Any]]], task: str) -> list[dict[str, Any]]:
    outs = [process[task] for process in runs]
    for out in outs:
        assert "result" in out, out.get("traceback")
    return [out["result"] for out in outs]


# --- tests -----------------------------------------------------------------------------
def test_processes_end_with_the_same_posterior_as_one_process_on_all_rows(runs):
    """Both processes hold bit-identical posteriors (every decision is taken on all-reduced
    sums, which gloo returns identically to every process). Against one process fitting all
    200 rows with the same seed: the draws are the same, and every sum over rows is the same
    sum taken in another order (two halves of 100 rows, then added), so the two fits differ
    by floating-point rounding only, about 1e-16 relative per sum; through the few dozen
    L-BFGS evaluations it stays far below the 1e-9 used here (a fit on other draws would
    differ by its Monte Carlo error, up to 0.02 sd)."""
    a, b = _results(runs, "fit")
    for key in ("loc", "variance", "trace"):
        assert torch.equal(a[key], b[key]), key
    assert a["khat"] == b["khat"] and a["n_data"] == 200 and a["solver"] == "lbfgs"
    x, y = _rows()
    alone = nb.fit(_line(3), x, y, seed=5)
    torch.testing.assert_close(a["loc"], alone.family.mean().detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(a["variance"], alone.family.variance().detach(),
                               rtol=1e-9, atol=0)
    assert a["khat"] == pytest.approx(alone.info.khat, abs=1e-9)


def test_stochastic_fit_agrees_between_processes_and_with_the_exact_fit(runs):
    """Adam on minibatches of 25 rows per process: both processes take the same steps (their
    gradients are summed before each) and hold identical posteriors. Against the fixed-draw
    fit of all rows (its own Monte Carlo error below 0.02 sd): the averaged Adam iterate of
    one process on these rows is within 0.01 sd of it (measured at batch sizes 25 and 50),
    and two processes estimate the same gradient with the same variance, so means must
    agree within 0.05 sd and sds within 5% (several times that error, well below the
    0.1 sd asked of a fit)."""
    a, b = _results(runs, "adam")
    for key in ("loc", "variance"):
        assert torch.equal(a[key], b[key]), key
    x, y = _rows()
    exact = nb.fit(_line(3), x, y, seed=5, family="fullrank")
    loc, sd = exact.family.mean().detach(), exact.family.variance().detach().sqrt()
    assert ((a["loc"] - loc).abs() / sd).max() < 0.05
    assert ((a["variance"].sqrt() / sd) - 1).abs().max() < 0.05


def test_a_process_with_bad_rows_stops_every_process_with_an_error(runs):
    """Process 1's y holds a NaN: it raises the usual error naming y, and process 0, which
    would otherwise wait for it in the next all-reduce, raises too (within the timeout)."""
    first, second = (process["bad_rows"] for process in runs)
    assert second["error"] == "ValueError" and "y" in second["message"]
    assert first["error"] == "RuntimeError"
    assert "process(es) [1] of 2" in first["message"]


def test_a_bad_value_in_one_process_rows_of_a_source_stops_every_process(runs):
    """A NaN in row 3,000 of 4,000 is in process 1's half of the file: its first pass (the
    Laplace start's subsample) raises the error naming the column, and process 0 raises
    too instead of waiting for it (the fixture fails on a hang)."""
    first, second = (process["bad_source"] for process in runs)
    assert second["error"] == "ValueError" and "'y'" in second["message"]
    assert first["error"] == "RuntimeError" and "process(es) [1] of 2" in first["message"]


def test_a_bad_value_met_by_one_process_in_training_stops_every_process(runs):
    """The same NaN met by ``nb.nn.train`` in process 1's batch: it raises the error naming
    the column, and process 0 raises too from the step's all-reduce, which carries the
    failure (it waited for the timeout before)."""
    first, second = (process["bad_source_network"] for process in runs)
    assert second["error"] == "ValueError" and "'y'" in second["message"], second
    assert first["error"] == "RuntimeError" and "process(es) [1] of 2" in first["message"]


def test_a_parquet_source_is_split_between_the_processes(runs, tmp_path_factory):
    """Both processes pass the whole file; each reads its half of the rows (``n_data`` stays
    4,000) and Adam takes steps of 250 rows from each, 500 in all. The tolerance is
    ``test_streamed_fit``'s for one process with steps of 500 rows, whose derivation holds
    here: the summed gradient has the same noise (0.1 sd for means, 5% for sds, against the
    exact posterior from the whole file); and the processes' posteriors are identical."""
    a, b = _results(runs, "parquet")
    for key in ("loc", "variance"):
        assert torch.equal(a[key], b[key]), key
    assert a["n_data"] == 4000 and a["solver"] == "adam"
    folder = tmp_path_factory.mktemp("exact")
    exact = nb.data.streamed_gaussian_linear_posterior(
        _parquet_source(Path(_write_parquet(folder)).parent), 1.0, 0.0, 10.0**-2)
    z = (a["loc"] - exact.loc) / exact.scale
    assert z.abs().max() < 0.1, z
    assert (a["variance"].sqrt() / exact.scale - 1).abs().max() < 0.05


def test_a_stopped_data_parallel_run_resumes_on_every_process(runs):
    """Both processes stop in step 13 of 30; process 0 had written both processes' states
    at step 10; restarted, each takes the 20 steps left from its own state and ends with
    the weights of the run that never stopped."""
    for out in _results(runs, "checkpoint"):
        assert out == {"stopped": True, "steps": 20, "same": True}


def test_a_stopped_data_parallel_fit_resumes_to_the_uninterrupted_posterior(runs):
    """``nb.fit``'s Adam run on two processes, stopped in its third window and restarted
    from the checkpoint of step 200: both processes see only the windows after it and end
    with the posterior of the same fit never stopped, bit for bit."""
    whole, _ = _results(runs, "adam")
    for out in _results(runs, "adam_resumed"):
        assert out["stopped"] and out["windows"] == out["steps"] // 100 - 2
        assert out["steps"] == whole["steps"]
        for key in ("loc", "variance"):
            assert torch.equal(out[key], whole[key]), key


def _same_fit(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Bit-identical fitted attributes and posterior moments."""
    assert np.array_equal(a["coef"], b["coef"]) and a["intercept"] == b["intercept"]
    for key in ("mean", "variance"):
        assert torch.equal(a[key], b[key]), key
    assert all(torch.equal(a["named"][k], b["named"][k]) for k in a["named"])


def test_exact_linear_regression_on_two_shares_equals_one_process(runs):
    """Processes holding 120 and 80 rows end with the same fitted attributes, bit for bit,
    and with one process's fit on all 200 rows: the standardisation's moments and ``X^T X``,
    ``X^T y``, ``y^T y`` are all-reduced sums, the same sums in another order, and the
    closed forms solve them in float64. One process solves from the rows, two from the
    summed Gram matrix of standardised columns (condition number near 1 here), so the fits
    differ by rounding, about 1e-15; tested at 1e-10 (absolute, on values of order 1)."""
    outs = _results(runs, "estimator_exact")
    x, y = _rows()
    for case, options in enumerate(_EXACT):
        a, b = (out["fits"][case] for out in outs)
        _same_fit(a, b)
        alone = _fitted(nb.BayesianLinearRegression(**options).fit(x.numpy(), y.numpy()))
        np.testing.assert_allclose(a["coef"], alone["coef"], rtol=0, atol=1e-10)
        assert a["intercept"] == pytest.approx(alone["intercept"], rel=0, abs=1e-10)
        torch.testing.assert_close(a["mean"], alone["mean"], rtol=0, atol=1e-10)
        torch.testing.assert_close(a["variance"], alone["variance"], rtol=1e-10, atol=0)


def test_glm_classifier_on_two_shares_equals_one_process(runs):
    """``BayesianGLMClassifier`` (VI by ``nb.fit``) on processes holding 120 and 80 rows,
    process 1 holding one of the two classes only: the classes are those of any process,
    both end with identical fitted attributes, and with those of one process on all rows.
    The two runs use the same draws (process 0's generator is the seed's) on the same
    standardised rows (their moments all-reduced), so they differ by the rounding of sums
    taken in another order, carried through L-BFGS to its stopping point and through k-hat's
    importance weights: measured 1e-15 sd. Tested, as ``nb.fit`` on two processes above, at
    1e-9 (posterior sds for the means, relative for the sds and k-hat); a fit on other draws
    would differ by its Monte Carlo error, up to 0.02 sd, and one that counted a process's
    rows twice, or standardised by one process's rows, by far more."""
    a, b = _results(runs, "estimator_vi")
    _same_fit(a, b)
    assert a["classes"] == b["classes"] == ["high", "low"]
    assert b["local"] == ["low"] and a["khat"] == b["khat"]
    x, labels = _labelled()
    clf = nb.BayesianGLMClassifier(progress=False).fit(x, labels)
    alone = _fitted(clf)
    sd = alone["variance"].sqrt()
    assert ((a["mean"] - alone["mean"]).abs() / sd).max() < 1e-9
    assert ((a["variance"].sqrt() / sd) - 1).abs().max() < 1e-9
    assert a["khat"] == pytest.approx(clf.posterior_.info.khat, rel=1e-9)
    for name, value in alone["named"].items():  # PSIS-corrected, as coef_ and intercept_
        assert (a["named"][name] - value).abs().max() < 1e-9 * sd.min(), name


def test_estimator_on_a_source_read_by_two_processes_equals_one_process(runs, tmp_path):
    """The exact fit from the Parquet file passed whole on both processes: each reads its
    2,000 rows, the column moments are merged over the processes (``ColumnMoments.pooled``)
    and the posterior is the one process's on all 4,000 rows to rounding (1e-10), bit for
    bit the same on both processes."""
    a, b = _results(runs, "estimator_source")
    _same_fit(a, b)
    source = nb.data.Parquet(_write_parquet(tmp_path), x=["a", "b"], y="y", buffer_rows=1024)
    reg = nb.BayesianLinearRegression(method="exact", prior_scale=None, noise_prior=None)
    alone = _fitted(reg.fit(source))
    np.testing.assert_allclose(a["coef"], alone["coef"], rtol=0, atol=1e-10)
    torch.testing.assert_close(a["mean"], alone["mean"], rtol=0, atol=1e-10)
    torch.testing.assert_close(a["variance"], alone["variance"], rtol=1e-10, atol=0)


def test_what_cannot_be_fitted_data_parallel_is_refused_on_every_process(runs):
    """Each raises the same error on both processes (none waits for the other): a network
    estimator and a formula (NotImplementedError, naming what to do), a flat prior for
    labels (its separation check needs all rows at once), arrays of 3 columns on one process
    and 2 on the other, float64 on one and float32 on the other, text labels on one and
    numbers on the other. Process 1's X holding a NaN: its own error there (scikit-learn's),
    an error naming process 1 on process 0, which would otherwise wait for it."""
    first, second = _results(runs, "estimator_refused")
    assert first.keys() == second.keys() == {"network", "formula", "flat", "width", "dtype",
                                             "kinds", "nan"}
    for name in first.keys() - {"nan"}:
        assert first[name] == second[name], name
    assert first["network"][0] == "NotImplementedError"
    assert "BNNRegressor.fit runs on one process" in first["network"][1]
    assert first["formula"][0] == "NotImplementedError"
    assert "from_formula and from_design build the design" in first["formula"][1]
    assert first["flat"][0] == "ValueError"
    assert "which a data-parallel fit (2 processes" in first["flat"][1]
    assert first["width"][0] == first["dtype"][0] == first["kinds"][0] == "ValueError"
    assert first["width"][1].startswith("X must have the same columns and dtype on every")
    assert "got between 2 and 3 columns on the 2 processes" in first["width"][1]
    assert "got between 4 and 8 bytes per value" in first["dtype"][1]
    assert first["kinds"][1].startswith("y must hold labels of one kind on every process")
    assert second["nan"][0] == "ValueError" and "NaN" in second["nan"][1]  # scikit-learn's
    assert first["nan"] == ("RuntimeError", first["nan"][1])
    assert "process(es) [1] of 2" in first["nan"][1]


def test_the_same_rows_on_every_process_are_refused(runs):
    """Counted once per process they would narrow the posterior by sqrt(2): every process
    raises, naming the argument and what to pass."""
    for process in runs:
        out = process["same_rows"]
        assert out.get("error") == "ValueError", out
        assert out["message"].startswith("x and y must be this process's own share of the rows")
        assert "got the same rows on every process" in out["message"]


def test_a_process_that_dies_stops_the_others_with_an_error(runs):
    """Process 1 exits in the middle of the run: process 0's next all-reduce finds the
    connection closed and raises, well within the timeout, instead of waiting."""
    first, second = (process.get("crash") for process in runs)
    assert second is None  # it died before it could write anything
    assert first is not None and first.get("error") in ("RuntimeError", "DistBackendError"), first


def test_network_training_keeps_the_processes_in_step(runs):
    """``nb.nn.train`` on two processes that start from different weights: process 0's are
    broadcast, the summed gradients keep every step the same, and both end with the same
    network and loss trace; ``n_data`` counts the rows of both."""
    a, b = _results(runs, "network")
    assert all(torch.equal(p, q) for p, q in zip(a["weights"], b["weights"], strict=True))
    assert torch.equal(a["trace"], b["trace"]) and a["n_data"] == 200


# --- the pieces, in one process -------------------------------------------------------
def test_one_process_world_is_the_identity():
    world = World()
    t = torch.arange(3.0)
    assert world.sum(t)[0] is t and world.total(7) == 7 and world.largest(7) == 7
    assert world.shard_scale(10, 10) == (10, 1.0) and world.share == 1.0
    assert world.gathered("mine") == ["mine"]
    with pytest.raises(ValueError, match="boom"):
        world.agree(ValueError("boom"))


def test_shard_scale_counts_the_whole_term_once():
    """Shares ``weight * (l_r / B_r * B_r + f0) / n`` over three processes of 2, 3 and 5
    rows (all rows in each batch) sum to ``(sum_r l_r + f0) / N``."""
    rows, l_sums, f0 = [2, 3, 5], [1.0, 2.0, 4.0], 3.0
    total = 0.0
    for rank, n_rows in enumerate(rows):
        as_size, weight = World(rank, 3).shard_scale(n_rows, sum(rows))
        total += weight * (l_sums[rank] * as_size / n_rows + f0) / as_size
    assert total == pytest.approx((sum(l_sums) + f0) / sum(rows), rel=1e-15)


def test_network_shares_sum_to_the_whole_loss_with_the_kl_once():
    """``NetworkObjective`` with ``World.shard_scale``'s size and weight: the shares of two
    processes holding 70 and 130 of 200 rows sum to the per-datum ``-ELBO`` of all rows,
    ``mean nll + KL / N``. The weights' sds are set to 1e-13 so the draws leave the
    likelihood unchanged to rounding; the KL, of order ``log(1e13)`` per weight, is then
    about half the loss (over 1 nat per datum), so counting it twice would miss by that.
    Float64 throughout: the two sides agree to about 1e-15 relative, tested at 1e-10."""
    from noisybayes.nn.train import NetworkObjective

    torch.manual_seed(0)
    net = nb.bayesian(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                          torch.nn.Linear(4, 1))).double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("scale_free"):
                p.fill_(-30.0)  # softplus(-30) = 1e-13
    lik = nb.nn.Gaussian().double()
    x, y = _rows()
    y = y[:, None]
    whole = NetworkObjective(net, lik, 200, 1, 1.0).loss(((x,), y))
    shares = []
    for rank, rows in enumerate((slice(0, 70), slice(70, 200))):
        n_rows = rows.stop - rows.start
        as_size, weight = World(rank, 2).shard_scale(n_rows, 200)
        objective = NetworkObjective(net, lik, as_size, 1, 1.0, weight)
        shares.append(objective.loss(((x[rows],), y[rows])))
    assert float(nb.nn.kl_divergence(net).detach()) / 200 > 1.0
    torch.testing.assert_close(shares[0] + shares[1], whole, rtol=1e-10, atol=0)
