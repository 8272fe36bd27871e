"""``nb.fit``: variational inference for an ``nb.Model``, with no tuning.

1. Laplace start: the mode by L-BFGS and the curvature there (``laplace.py``).
2. Whitening: the family lives in ``z`` with ``theta = mode + T z``, ``T T^T ≈ H^{-1}``
   (diagonal ``T`` for mean-field and low-rank), so the ELBO is well conditioned and
   one learning rate fits every problem.
3. The ELBO on fixed antithetic draws, moment-matched so that they integrate every
   quadratic exactly, maximised by L-BFGS (``fixed_draws.py``): a handful of full-data
   evaluations, the draw count raised until the optimum's estimated Monte Carlo error is
   below 0.02 posterior sd.
4. Where that does not apply (minibatches asked for, the draw count over its budget, a
   non-finite value): stochastic optimisation of the ELBO with Adam, antithetic draws in
   one batched pass, minibatches scaled by ``N/B`` with an SVRG control variate anchored at
   the mode. The run is cut into windows; when a window's mean ELBO is no longer
   significantly above the previous one the learning rate is cut, and the fit stops once
   it is small. The answer is the average of the iterates over the last window.

From a data source (``nb.fit(model, nb.data.Parquet(...))``) the fit streams: step 4 on
minibatches read from the source, the whole-data statistics in passes or on a subsample
(``streamed.py``); a source no larger than that subsample is read whole and fitted as rows
in memory.

Under ``torch.distributed`` each process passes its own rows and every sum over rows is
summed over the processes (``engine/distributed.py``): all take the same steps and end with
the same posterior.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from noisybayes._checks import check_choice, check_positive_int, is_number
from noisybayes._progress import show_progress
from noisybayes._rng import make_generator
from noisybayes.engine import DataSource, StallSchedule, TensorSource, Trainer, WindowReport
from noisybayes.engine.checkpoint import run_checkpointed
from noisybayes.engine.distributed import World
from noisybayes.engine.source import check_whole
from noisybayes.errors import DivergenceError
from noisybayes.infer.data import Rows, as_data
from noisybayes.infer.diagnostics import USABLE, sequential_khat
from noisybayes.infer.fixed_draws import fit_fixed_draws
from noisybayes.infer.laplace import LaplaceResult, laplace, laplace_from_subset, whitening
from noisybayes.infer.objective import Data, LogJoint, elbo_estimate
from noisybayes.infer.posterior import FitInfo, GaussianPosterior
from noisybayes.infer.reweighting import ImportanceDraws
from noisybayes.infer.streamed import check_source_inputs, subsample
from noisybayes.math.families import FAMILIES, FullRank, GaussianFamily, LowRank, MeanField
from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model

__all__ = ["AutoFamily", "FitState", "fit"]

FamilyName = Literal["auto", "meanfield", "lowrank", "fullrank"]
SolverName = Literal["auto", "lbfgs", "adam"]
_ONE_THREAD_MAX = 1_000_000  # input elements (rows x columns) fitted on one thread

@dataclass(frozen=True)
class AutoFamily:
    """``family="auto"``: the richest Gaussian family whose cost suits the parameter count.

    Full-rank up to ``fullrank_max`` parameters (a ``P x P`` Cholesky factor is cheap
    there), low-rank (``rank`` factors) up to ``lowrank_max``, mean-field beyond; a cheaper
    family whose Pareto k-hat exceeds 0.7 is refitted full-rank up to ``refit_max``
    parameters. Pass an instance as ``nb.fit(..., family=AutoFamily(...))`` to change the
    thresholds.
    """

    fullrank_max: int = 200
    lowrank_max: int = 5000
    refit_max: int = 1000
    rank: int = 10

    def choose(self, size: int) -> tuple[str, int, str]:
        """``(family, rank, reason)`` for ``size`` parameters."""
        if size <= self.fullrank_max:
            return "fullrank", 0, f"auto: {size} parameters <= {self.fullrank_max}, full-rank"
        if size <= self.lowrank_max:
            rank = min(self.rank, size)
            return (
                "lowrank",
                rank,
                f"auto: {size} parameters > {self.fullrank_max}, low-rank (rank {rank})",
            )
        return "meanfield", 0, f"auto: {size} parameters > {self.lowrank_max}, mean-field"

    def refits(self, name: str, size: int, khat: float) -> bool:
        """Whether a ``name`` fit of ``size`` parameters with this k-hat is refitted full-rank."""
        return khat > USABLE and name != "fullrank" and size <= self.refit_max


@dataclass(frozen=True)
class FitState:
    """What a ``callback`` sees at the end of each window: the window's mean per-datum loss
    (``-ELBO / N``), the step size and the family so far (the answer if training stopped)."""

    step: int
    loss: float
    learning_rate: float
    family: GaussianFamily


def _check_model_output(log_joint: LogJoint, u: torch.Tensor, data: Data) -> None:
    """Run ``forward`` once, with argument validation on, and check it fits ``y``."""
    xs, y = data
    head = (tuple(x[:8] for x in xs), y[:8])
    values, _ = log_joint.layout.constrain(u)
    dist = log_joint.likelihood(values, head[0])
    if not isinstance(dist, torch.distributions.Distribution):
        raise TypeError(
            f"model.forward must return a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    shape = tuple(dist.batch_shape + dist.event_shape)
    if shape != tuple(head[1].shape):
        raise ValueError(
            f"y must have the shape of the model's distribution: forward returned shape {shape} "
            f"for the first {head[1].shape[0]} rows, y has {tuple(head[1].shape)}"
        )
    full = log_joint.likelihood(values, xs)
    inside = full.support.check(y)
    if not bool(inside.all()):
        first = tuple((~inside).nonzero()[0].tolist())
        raise ValueError(
            f"y must lie in the support of the likelihood ({full.support}), got "
            f"{int((~inside).sum())} value(s) outside, e.g. {y[first].tolist()!r} at row {first[0]}"
        )


def _build_family(
    name: str, laplace_loc: torch.Tensor, precision: torch.Tensor, rank: int
) -> GaussianFamily:
    """The family in coordinates whitened by the Laplace curvature, started at Laplace."""
    if name == "fullrank":
        return FullRank(laplace_loc, whitening(precision, diagonal=False)[0])
    if name == "meanfield":  # the mean-field optimum for a Gaussian: sd_j = 1/sqrt(H_jj)
        return MeanField(laplace_loc, whitening(precision, diagonal=True)[0])
    full, _ = whitening(precision, diagonal=False)
    covariance = full @ full.T
    precond = covariance.diagonal().sqrt()  # Laplace marginal sds: unit-diagonal z-covariance
    family = LowRank(laplace_loc, precond, rank=min(rank, laplace_loc.shape[0]))
    family.set_z_covariance(covariance / precond[:, None] / precond[None, :])
    return family


def _whitened_curvature(family: GaussianFamily, precision: torch.Tensor) -> torch.Tensor:
    """The Laplace precision seen from the family's coordinates: ``T^T H T``."""
    t = family.precond.double()
    h = precision.double()
    whitened = t[:, None] * h * t[None, :] if t.ndim == 1 else t.T @ h @ t
    return whitened.to(precision.dtype)


def fit(
    model: Model,
    x: Any,
    y: Any = None,
    *,
    family: FamilyName | AutoFamily = "auto",
    rank: int = 2,
    solver: SolverName = "auto",
    batch_size: int | Literal["auto"] | None = "auto",
    n_samples: int = 16,
    max_steps: int = 10_000,
    learning_rate: float = 0.05,
    window: int = 100,
    average_windows: int = 4,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    max_curvature_rows: int = 50_000,
    callback: Callable[[FitState], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
) -> GaussianPosterior:
    """Fit ``q(theta)`` to ``p(theta | x, y)`` by maximising the ELBO.

    Args:
        model: an ``nb.Model``; ``model(*x)`` returns the distribution of ``y``.
        x: a tensor or a tuple of tensors (``forward``'s positional arguments), rows first
            (under ``torch.distributed``, this process's rows: ``N`` is their sum over the
            processes, every sum over rows is summed across them, and process 0's seed or
            generator serves all);
            or a data source (:class:`~noisybayes.engine.DataSource`, e.g.
            ``nb.data.Parquet(...)``) yielding them with ``y``, read in bounded memory:
            Adam steps on its minibatches (the fixed-draw solve needs all rows at each
            step), the Laplace start's mode search and curvature on a uniform subsample of
            about ``max_curvature_rows`` rows read in one pass (50,000 by default: the
            curvature, a sum over them scaled by ``N / n``, is then within about
            ``1 / sqrt(n) = 0.5%``, ample for whitening; the mode is not taken from them),
            the mode polished by Newton steps of one pass each over all rows, and k-hat
            (``family="auto"``) summed over all rows in passes, with at least 200 draws
            (``noisybayes.infer.streamed``); ``info.reason`` says so, and ``post.check()``
            then needs rows passed to it. A source of at most ``max_curvature_rows`` rows
            (in one process) is that subsample whole: its rows are fitted as tensors in
            memory would be (the fixed-draw solve by default, ``solver="lbfgs"`` and
            ``batch_size=None`` allowed, k-hat at those rows), which ``info.reason`` notes.
            Under ``torch.distributed`` every process passes the whole source and reads its
            own range of the rows (``source.shard``).
        y: the targets, ``(N, ...)``; ``None`` when ``x`` is a data source. The fit
            computes in the widest float dtype of x and y.
        family: ``"meanfield"`` (diagonal), ``"lowrank"`` (``rank`` factors + diagonal) or
            ``"fullrank"`` (Cholesky) Gaussian over the unconstrained parameters, or
            ``"auto"``: full-rank up to 200 parameters, low-rank (rank 10) up to 5,000,
            mean-field beyond; then the Pareto k-hat of the fit (as ``post.check()``, from
            as many draws as deciding "above or below 0.7" needs: 4,000 doubled up to
            100,000, fewer on large data, ``diagnostics.sequential_khat``), and a full-rank
            refit when a cheaper family gets k-hat > 0.7 and there are at most 1,000
            parameters. ``info.family_reason`` says what happened, ``info.khat`` and
            ``info.khat_draws`` hold k-hat and its draws; a final k-hat > 0.7 raises a
            ``UserWarning``; one at most 0.7 keeps the draws with their PSIS weights
            (``post.importance``) and ``post.mean``, ``sd`` and ``summary()`` are corrected
            by them, when there are enough of them and even enough
            (``ImportanceDraws.corrects``; ``info.family_reason`` says when not).
            An :class:`AutoFamily` is ``"auto"`` with other thresholds.
        rank: the number of factors of a ``"lowrank"`` family.
        solver: ``"lbfgs"``: the ELBO on fixed draws by L-BFGS, on all rows, falling back
            to ``"adam"`` when it cannot reach its Monte Carlo tolerance within a budget of
            ``5e7`` row-draws per evaluation (a few hundred MB; ``info.solver`` and
            ``info.reason`` say what ran);
            ``"adam"``: stochastic steps on minibatches; ``"auto"``: ``"lbfgs"`` unless an
            integer ``batch_size`` smaller than the data is given.
        batch_size: rows per Adam step; ``None`` uses all rows, ``"auto"`` all rows up to
            10,000 and 4,096 beyond. The batch log-likelihood is scaled by
            ``N / batch_size`` so each step is unbiased for the full-data ELBO.
        n_samples: Monte Carlo draws per Adam step (antithetic pairs), in one pass.
        max_steps: a hard cap on optimisation steps (``info.converged`` says if it bit).
        learning_rate, window, average_windows: the initial Adam step in whitened units, the
            steps between convergence checks, and how many stationary windows the final
            iterate average spans. The defaults need no tuning.
        seed, generator: the randomness of the fit (one of them); a fixed seed reproduces it.
        progress: a progress bar with the loss for a stochastic fit that takes more than
            a second; ``None`` (default) shows it only when stderr is a terminal (on
            process 0 alone under ``torch.distributed``).
        max_curvature_rows: rows used for the Laplace curvature on large data (and, from
            a data source, for the mode search and the model's output check; in one process
            a source of no more rows is read whole and fitted in memory).
        callback: called with a :class:`FitState` after every window.
        checkpoint, checkpoint_every: a file to write the stochastic optimisation's whole
            state to every ``checkpoint_every`` steps; when it exists, the fit resumes from
            it (the Laplace start and a fixed-draw solve, deterministic and short, are
            recomputed), and a fit restarted with the same arguments ends as the
            uninterrupted one would (``noisybayes.engine.checkpoint``; under
            ``torch.distributed`` process 0 writes every process's state).
    """
    auto = family if isinstance(family, AutoFamily) else AutoFamily()
    if not isinstance(family, AutoFamily):
        check_choice("family", family, ("auto", *FAMILIES))
    check_choice("solver", solver, ("auto", "lbfgs", "adam"))
    rank = check_positive_int("rank", rank)
    n_samples = check_positive_int("n_samples", n_samples)
    window = check_positive_int("window", window)
    average_windows = check_positive_int("average_windows", average_windows)
    max_steps = check_positive_int("max_steps", max_steps)
    if not (is_number(learning_rate) and 0 < learning_rate < math.inf):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    learning_rate = float(learning_rate)
    max_curvature_rows = check_positive_int("max_curvature_rows", max_curvature_rows)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    gen = make_generator(seed, generator)
    world = World.current()
    streamed = isinstance(x, DataSource)
    read_note = ""
    if streamed:
        if y is not None:
            raise ValueError(f"y must be None when x is a data source (it yields y), got {y!r}")
        check_whole("x", x)
        if x.n_rows == 0:
            raise ValueError("x must be a data source with rows, got one of 0 rows")
        whole = not world.parallel and x.n_rows <= max_curvature_rows
        if not whole and (solver == "lbfgs" or batch_size is None):
            raise ValueError(
                "solver='lbfgs' and batch_size=None need every row in memory at each step, so "
                "with x a data source of more than max_curvature_rows rows, or under "
                "torch.distributed, solver must be 'auto' or 'adam' and batch_size an integer "
                f"or 'auto', got solver={solver!r}, batch_size={batch_size!r} for "
                f"{x.n_rows} rows and max_curvature_rows={max_curvature_rows}")
        if world.parallel:  # each process reads its own range of the rows
            x = x.shard(world.rank, world.size)
        n_data = x.n_data
        with world.together():  # a process whose rows fail to read stops them all
            data = subsample(x, max(1, max_curvature_rows * x.n_rows // n_data), gen)
            check_source_inputs(model, data)
        if whole:  # the subsample is every row (in the pass's order): fitted in memory
            streamed = False
            data = _checked_pass(data)
            rows: Rows | None = Rows.in_memory(data)  # the posterior keeps no rows, as ever
            read_note = (f"the source's {x.n_rows} rows, at most max_curvature_rows "
                         f"({max_curvature_rows}), read into memory and fitted as tensors")
        else:
            solver = "adam"
            rows = Rows.streamed(x, data[1][:1].numel(), world)
    else:
        if y is None:
            raise ValueError("y must be given when x is a tensor or a tuple of tensors, got None")
        with world.together():  # a process with bad rows stops them all
            data = as_data(x, y)
        world.check_own_rows("x and y", *data[0], data[1])
        n_data = world.total(data[1].shape[0])
        rows = Rows.shard(data, world) if world.parallel else None
    n_rows: int = x.n_rows if streamed else data[1].shape[0]  # this process's rows
    gen = world.same_generator(gen)
    if not (batch_size == "auto" or batch_size is None):
        batch_size = check_positive_int("batch_size", batch_size)
        fewest = world.smallest(n_rows)
        if batch_size > fewest:
            each = " of the process with fewest" if world.parallel else ""
            raise ValueError(
                f"batch_size must be <= the number of rows{each} ({fewest}), got {batch_size}"
            )
    if solver == "auto":
        every = batch_size in ("auto", None) or world.smallest(int(batch_size == n_rows))
        solver = "lbfgs" if every else "adam"
    if batch_size == "auto":
        batch_size = n_rows if n_data <= 10_000 else min(4096, n_rows)
    batch_size = batch_size or n_rows
    minibatches = world.largest(int(batch_size < n_rows)) > 0
    with threads_for(sum(t[:1].numel() for t in data[0]) * n_data):
        started = time.perf_counter()

        layout = ParamLayout(model)
        log_joint = LogJoint(model, layout)
        start = torch.zeros(layout.size, dtype=data[1].dtype)
        with world.together():
            _check_model_output(log_joint, start, data)

        if streamed and rows is not None:
            mode = laplace_from_subset(log_joint, data, rows, n_data, start, n_rows=n_rows)
        else:
            mode = laplace(log_joint, data, start, gen, max_curvature_rows, world=world)
            world.same_generator(gen)  # processes with more rows drew a larger subset
        if not bool(torch.isfinite(mode.loc).all() and torch.isfinite(mode.precision).all()):
            raise DivergenceError(
                "the search for the posterior mode diverged (non-finite parameters or curvature); "
                "the posterior may be improper: give proper priors or check the data's scale"
            )
        source = x if streamed else TensorSource(*data, n_data=n_data)

        def run(name: str, family_rank: int, why: str) -> GaussianPosterior:
            q = _build_family(name, mode.loc, mode.precision, family_rank)
            curvature = _whitened_curvature(q, mode.precision)
            if solver == "lbfgs":
                solved = fit_fixed_draws(log_joint, q, data, curvature, gen,
                                         max_iter=min(100, max_steps), world=world)
                if solved.converged:
                    q.requires_grad_(False)
                    if callback is not None:
                        callback(FitState(solved.n_evaluations, solved.loss_trace[-1], 1.0, q))
                    trace = torch.tensor(solved.loss_trace, dtype=data[1].dtype)
                    return finish(q, solved.n_evaluations, True, solved.reason, trace, n_data,
                                  solved.n_draws, solved.n_evaluations, 0, why, "lbfgs")
                why += f"; {solved.reason}, so stochastic optimisation instead"
                q = _build_family(name, mode.loc, mode.precision, family_rank)
            anchor = (mode.loc, mode.log_lik_gradient) if minibatches else None
            objective = FamilyObjective(log_joint, q, n_data, n_samples, gen, anchor, curvature,
                                        world.shard_scale(n_rows, n_data))
            schedule = StallSchedule(learning_rate, n_data, window, average_windows)
            report = None if callback is None else _family_states(q, callback)
            trainer = Trainer(objective, source, schedule, batch_size=batch_size, generator=gen,
                              max_steps=max_steps, max_recoveries=3,
                              progress=show_progress(progress) and world.rank == 0,
                              callback=report, fingerprint=",".join(layout.names), world=world)
            result = trainer.run() if checkpoint is None else run_checkpointed(
                trainer, checkpoint, checkpoint_every, world, key=name)
            world.same_generator(gen)  # passes over more rows drew more batch orders
            assert result is not None  # run() without `until` always finishes
            q.requires_grad_(False)
            reason = result.reason
            if streamed:
                reason += f"; {_streamed_note(data, mode, batch_size)}"
            return finish(q, result.n_steps, result.converged, reason, result.loss_trace,
                          batch_size, n_samples, result.n_epochs, result.recoveries, why, "adam")

        def finish(q: GaussianFamily, n_steps: int, converged: bool, reason: str,
                   trace: torch.Tensor, batch: int, draws: int, epochs: float, recoveries: int,
                   why: str, used: str) -> GaussianPosterior:
            info = FitInfo(
                family=q.name, n_steps=n_steps, converged=converged,
                reason=f"{reason}; {read_note}" if read_note else reason,
                loss_trace=trace, n_data=n_data, batch_size=batch, n_samples=draws,
                seconds=time.perf_counter() - started, n_epochs=epochs,
                laplace_converged=mode.converged, laplace_positive_definite=mode.positive_definite,
                recoveries=recoveries, family_reason=why, laplace_precision=mode.precision,
                solver=used,
            )
            kept = data if rows is None else None  # not all rows, or a source's: check() asks
            return GaussianPosterior(model, layout, q, info, kept)

        if isinstance(family, str) and family != "auto":
            return run(family, rank, f"requested family={family!r}")
        name, auto_rank, why = auto.choose(layout.size)
        post = run(name, auto_rank, why)
        estimate = sequential_khat(post, gen, rows=rows)
        if auto.refits(name, layout.size, estimate.khat):
            why += (
                f"; its Pareto k-hat {estimate.khat:.2f} > {USABLE}, so refitted full-rank "
                f"({layout.size} parameters <= {auto.refit_max})"
            )
            post = run("fullrank", 0, why)
            estimate = sequential_khat(post, gen, rows=rows)
        khat = estimate.khat
        post.info = replace(post.info, khat=khat, khat_draws=estimate.n_draws, family_reason=why,
                            seconds=time.perf_counter() - started)
        if khat <= USABLE:
            if estimate.importance.corrects:
                post.importance = estimate.importance
            else:
                post.info = replace(post.info, family_reason=(
                    f"{why}; its k-hat draws cannot correct the summaries "
                    f"({_uncorrected(estimate.importance)}), so they are q's own"))
        else:
            warnings.warn(
                f"nb.fit(family='auto'): the {post.info.family} approximation has Pareto k-hat "
                f"{khat:.2f} (from {estimate.n_draws} draws) > {USABLE}, so its means and sds cannot "
                f"be trusted ({why}). Check the model's parameterisation and priors, or use MCMC; "
                f"{'post.check()' if post.data is not None else 'post.check(x, y)'} gives "
                "details.",
                UserWarning,
                stacklevel=2,
            )
        return post


def _checked_pass(data: Data) -> Data:
    """The rows of a source read whole, checked and converted as rows in memory are
    (:func:`~noisybayes.infer.data.as_data`); an index in the error counts the pass's rows."""
    try:
        return as_data(*data)
    except ValueError as error:
        if "at index" not in str(error):
            raise
        raise ValueError(f"{error} (in the order of the source's pass)") from None


def _uncorrected(importance: ImportanceDraws) -> str:
    """Why ``importance`` does not correct the summaries (``ImportanceDraws.corrects``)."""
    kept = importance.weights.numel()
    return (f"k-hat {importance.khat:.2f} from {importance.n_ratios:,} draws; "
            f"{kept:,} kept, {importance.effective_draws:,.0f} of them effective")


def _streamed_note(sample: Data, mode: LaplaceResult, batch_size: int) -> str:
    """What a fit from a data source did differently (for ``info.reason``)."""
    return (
        f"x is a data source, so Adam on minibatches of {batch_size} rows read from it (the "
        f"fixed-draw solve needs every row at each step); the Laplace start on a subsample "
        f"of {sample[1].shape[0]} rows, its mode polished by {mode.n_passes} Newton "
        f"pass(es) over all rows"
    )


@contextmanager
def threads_for(row_elements: int) -> Iterator[None]:
    """Run small problems on one intra-op thread, and put torch's setting back after.

    ``row_elements`` is the inputs' size (rows x columns). Up to ``_ONE_THREAD_MAX`` the
    tensor operations of a fit are too small for threads to pay, and while another process
    holds a core each parallel operation waits for it: on a shared 2-core machine the
    default two threads made a small fit up to 20 times slower (``benchmarks/RESULTS.md``).
    Larger problems keep torch's setting.
    """
    saved = torch.get_num_threads()
    if row_elements > _ONE_THREAD_MAX or saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _family_states(
    family: GaussianFamily, callback: Callable[[FitState], None]
) -> Callable[[WindowReport], None]:
    """The engine's window reports as :class:`FitState`s for a user's callback."""

    def report(window: WindowReport) -> None:
        state = FitState(window.step, window.mean_loss, window.learning_rate,
                         _with_params(family, window.params))
        callback(state)

    return report


class FamilyObjective:
    """The per-datum ``-ELBO`` of a Gaussian family, for the engine: ``-elbo_estimate / N``
    (with the SVRG and Taylor control variates when ``anchor`` and ``curvature`` are set);
    in a data-parallel fit, this process's share (``shard``, from ``World.shard_scale``)."""

    def __init__(
        self,
        log_joint: LogJoint,
        family: GaussianFamily,
        n_data: int,
        n_samples: int,
        generator: torch.Generator,
        anchor: tuple[torch.Tensor, torch.Tensor] | None,
        curvature: torch.Tensor | None,
        shard: tuple[int, float] | None = None,
    ) -> None:
        self.log_joint, self.family, self.n_data = log_joint, family, n_data
        self.n_samples, self.generator = n_samples, generator
        self.anchor, self.curvature = anchor, curvature
        self.as_data_size, self.weight = shard or (n_data, 1.0)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.family.parameters())

    def loss(self, batch: Data) -> torch.Tensor:
        elbo = elbo_estimate(self.log_joint, self.family, batch, self.as_data_size,
                             self.n_samples, self.generator, self.anchor, self.curvature)
        return -self.weight * elbo / self.as_data_size


def _with_params(family: GaussianFamily, values: list[torch.Tensor]) -> GaussianFamily:
    """A frozen copy of ``family`` holding ``values`` as its parameters."""
    clone = copy.deepcopy(family)
    with torch.no_grad():
        for p, v in zip(clone.parameters(), values, strict=True):
            p.copy_(v)
    return clone.requires_grad_(False)
