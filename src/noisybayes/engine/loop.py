"""The one training loop: an objective, a data source, an optimiser step and a schedule.

Every route that learns a posterior by stochastic optimisation (``nb.fit``, ``nb.nn.train``
and the estimators built on them) runs through :class:`Trainer`. One step draws a minibatch,
evaluates the objective's loss, the per-datum ``-ELBO`` (an unbiased estimate of
``-ELBO / N`` from the batch), and takes an optimiser step (Adam unless told otherwise) at
the schedule's step size. After
each window of steps the schedule decides (cut the step, average the iterates, stop).

The whole running state (parameters, Adam's moments, the schedule, the generator, the
position in the current pass over the data, the window sums and the trace) comes back from
:meth:`Trainer.state_dict` as tensors and plain numbers: :func:`save_state` writes it and
:func:`load_state` reads it without unpickling objects (``torch.load(weights_only=True)``).
A trainer restored from it continues bit for bit as the uninterrupted one would on the
CPU; on a GPU the device's generator is seeded afresh from the loop's at each ``run``, so a
resumed run there is reproducible but not bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from noisybayes.engine.adam import Adam
from noisybayes.engine.distributed import World
from noisybayes.engine.schedule import Schedule, Window
from noisybayes.engine.source import Batch, DataSource
from noisybayes.errors import DivergenceError

__all__ = [
    "Objective",
    "OptimizerFactory",
    "RunResult",
    "Step",
    "Trainer",
    "WeightSampler",
    "WindowReport",
    "adam",
    "load_state",
    "save_state",
]

_FORMAT = 1


class Step(Protocol):
    """What the loop needs of an optimiser (a ``torch.optim.Optimizer`` has it)."""

    param_groups: list[dict[str, Any]]

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


OptimizerFactory = Callable[[list[torch.Tensor], float], Step]


def adam(params: list[torch.Tensor], learning_rate: float) -> Adam:
    """The default optimiser step: Adam with torch's default moments, its update fused into
    one kernel where torch has one (floating parameters on the CPU or a CUDA device: the
    same update at a fraction of the per-tensor cost of small networks), else the default
    (``engine.adam``: torch's update without a ``torch.optim.Optimizer``)."""
    return Adam(params, learning_rate)


class Objective(Protocol):
    """The loss the loop minimises and the tensors Adam updates."""

    def parameters(self) -> list[torch.Tensor]: ...

    def loss(self, batch: Batch) -> torch.Tensor:
        """The per-datum ``-ELBO`` estimated from one minibatch, a differentiable scalar."""
        ...


@runtime_checkable
class WeightSampler(Protocol):
    """An optimiser that holds a posterior over the weights (``noisybayes.optim.IVON``): the
    loop takes each step's gradient at ``mc_samples`` draws, each inside the optimiser's
    ``sampled_params(train=True)`` block, which keeps the gradient for its ``step``."""

    mc_samples: int

    def sampled_params(self, train: bool = False) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class WindowReport:
    """What a callback sees after each window: the step, the window's mean per-datum loss,
    the step size and the answer so far (``params``, in the objective's order)."""

    step: int
    mean_loss: float
    learning_rate: float
    params: list[torch.Tensor]


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``loss_trace`` is the per-datum ``-ELBO`` estimate of every step."""

    n_steps: int
    n_epochs: float
    converged: bool
    reason: str
    loss_trace: torch.Tensor
    recoveries: int


class Trainer:
    """Minimise ``objective.loss`` over minibatches of ``source``.

    Args:
        objective: the loss and its parameters (updated in place).
        source: the minibatches; a new pass starts from a seed drawn from ``generator``.
        schedule: the step size and the decisions after each window.
        batch_size: rows per step. ``drop_last``: only full batches (unbiased steps of
            equal weight) or also the last, smaller batch of each pass.
        generator: the loop's randomness; the objective should draw from it too. Code that
            draws from torch's global generator (weight noise in layers) sees a global
            generator seeded from it, forked from the user's and restored after each run.
        max_steps: a hard cap on steps. ``max_recoveries``: after a non-finite loss the
            iterate returns to the last window's answer and the schedule cuts the step,
            at most this often; then :class:`~noisybayes.errors.DivergenceError`.
        progress: a progress bar (shown after a second) with the loss of the last window;
            its total is the schedule's ``length`` when that is fixed, else it counts steps.
            ``callback``: called with a :class:`WindowReport` after every window.
        fingerprint: a string naming the model (parameter names); a saved state of
            another model (names, shapes, dtypes) or of another run (rows, batch size,
            first step size) is refused.
        optimizer: makes the optimiser step from the parameters and the first step size
            (Adam by default); the schedule sets each step's size in its param groups.
        world: the processes of a data-parallel run (``noisybayes.engine.distributed``):
            the objective's loss is then this process's share, and each step's loss and
            gradient are summed over the processes before the step, so every process takes
            the same step and the same decisions. One process by default.
    """

    def __init__(
        self,
        objective: Objective,
        source: DataSource,
        schedule: Schedule,
        *,
        batch_size: int,
        generator: torch.Generator,
        max_steps: int,
        drop_last: bool = True,
        max_recoveries: int = 0,
        progress: bool = False,
        callback: Callable[[WindowReport], None] | None = None,
        fingerprint: str = "",
        optimizer: OptimizerFactory = adam,
        world: World | None = None,
    ) -> None:
        self.world = world or World()
        self.objective, self.source, self.schedule = objective, source, schedule
        self.batch_size, self.drop_last = batch_size, drop_last
        self.generator, self.max_steps = generator, max_steps
        self.max_recoveries, self.progress, self.callback = max_recoveries, progress, callback
        self.params = list(objective.parameters())
        self.fingerprint = (
            f"rows={source.n_rows},batch={batch_size},drop_last={drop_last},"
            f"step={schedule.learning_rate(0):.6g}|{fingerprint}|"
            + ";".join(f"{tuple(p.shape)}:{p.dtype}" for p in self.params))
        self.make_optimizer = optimizer
        self.optimizer = optimizer(self.params, schedule.learning_rate(0))
        if self.world.parallel and self.sampler is not None:
            raise ValueError(
                "optimizer must be a plain gradient step in a data-parallel run (its "
                f"gradients are summed over processes), got {type(self.optimizer).__name__}, "
                "which draws weights inside its own steps")
        self.step = self.epoch = self.epoch_batches = self.recoveries = self.averaged = 0
        self.epoch_seed: int | None = None
        self.trace: list[float] = []
        self.window_sum = [torch.zeros_like(p) for p in self.params]
        self.average_sum = [torch.zeros_like(p) for p in self.params]
        self.answer = [p.detach().clone() for p in self.params]
        self.global_rng = self._seeded_global_state()
        self.result: RunResult | None = None
        self._batches: Iterator[Batch] | None = None

    # --- running --------------------------------------------------------------------
    @property
    def optimizer(self) -> Step:
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: Step) -> None:
        """Every new optimizer (at the start, after a recovery, on resuming) is asked once
        whether it draws the weights itself: ``sampler`` is then it, else ``None`` (a runtime
        ``Protocol``'s ``isinstance`` is slow next to a small network's step)."""
        self._optimizer = optimizer
        self.sampler: WeightSampler | None = (
            optimizer if isinstance(optimizer, WeightSampler) else None)

    def run(self, until: int | None = None) -> RunResult | None:
        """Train until the schedule stops or ``max_steps``; with ``until``, pause after that
        many steps in all and return ``None`` (call again to go on)."""
        if self.result is not None:
            return self.result
        limit = self.max_steps if until is None else min(until, self.max_steps)
        bar = tqdm(total=self.schedule.length, initial=self.step, disable=not self.progress,
                   delay=1.0, leave=False, desc="fit", unit="step")
        try:
            with self._global_rng():
                while self.step < limit and self.result is None:
                    self._one_step(bar)
        finally:
            bar.close()
        if self.result is None and self.step >= self.max_steps:
            self._finish(False, f"max_steps={self.max_steps} reached")
        return self.result

    def _one_step(self, bar: Any) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.learning_rate(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        value = self._loss_and_gradient()
        if not math.isfinite(value):
            self._recover(value)
            return
        self.optimizer.step()
        self.step += 1
        self.trace.append(value)
        if self.schedule.answer == "average":
            with torch.no_grad():
                for total, p in zip(self.window_sum, self.params, strict=True):
                    total += p
        bar.update(1)
        if self.step % self.schedule.window == 0:
            self._end_window(bar)

    def _loss_and_gradient(self) -> float:
        """The next batch's loss, its gradient left in the parameters' ``.grad``; for a
        :class:`WeightSampler`, the mean loss over its draws of the weights. In a
        data-parallel run both are summed over the processes, with a flag saying whether
        any process failed to read or evaluate its batch (a bad value in its rows of a
        data source): then every process raises (``World.agree``) instead of the others
        waiting for it in the next all-reduce."""
        if self.sampler is not None:
            batch = self._next_batch()
            values = []
            for _ in range(self.sampler.mc_samples):
                with self.sampler.sampled_params(train=True):
                    values.append(self._backward(batch))
            return sum(values) / len(values)
        if not self.world.parallel:
            return self._backward(self._next_batch())
        failed, value = None, 0.0
        try:
            value = self._backward(self._next_batch())
        except Exception as error:
            failed = error
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        flag = torch.tensor(float(failed is not None), dtype=torch.float64)
        total, any_failed, *summed = self.world.sum(torch.tensor(value, dtype=torch.float64),
                                                    flag, *grads)
        if float(any_failed):
            self.world.agree(failed)
        for p, g in zip(self.params, summed, strict=True):
            p.grad = g
        return float(total)

    def _backward(self, batch: Batch) -> float:
        loss = self.objective.loss(batch)
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward()
        return value

    def _end_window(self, bar: Any) -> None:
        window = self.schedule.window
        recent = torch.tensor(self.trace[-window:], dtype=torch.float64)
        error = float(recent.std()) / math.sqrt(window) if window > 1 else 0.0
        decision = self.schedule.observe(Window(self.step, window, float(recent.mean()), error))
        with torch.no_grad():
            window_mean = [total / window for total in self.window_sum]
            for total in self.window_sum:
                total.zero_()
            if decision.averaging == "restart":
                self.averaged = 0
                for total in self.average_sum:
                    total.zero_()
            if decision.averaging == "add":
                self.averaged += 1
                for total, mean in zip(self.average_sum, window_mean, strict=True):
                    total += mean
                self.answer = [total / self.averaged for total in self.average_sum]
            else:
                self.answer = window_mean
        bar.set_postfix(loss=f"{recent.mean():.4g}", refresh=False)
        if self.callback is not None:
            lr = self.schedule.learning_rate(self.step)
            self.callback(WindowReport(self.step, float(recent.mean()), lr, self.answer))
        if decision.stop:
            self._finish(decision.converged, decision.reason)

    def _recover(self, value: float) -> None:
        """Back to the last answer with a smaller step, or raise."""
        self.recoveries += 1
        if self.recoveries > self.max_recoveries:
            previous = (f"{sum(self.trace[-100:]) / len(self.trace[-100:]):.4g}"
                        if self.trace else "none yet")
            tried = (f" and did not recover after {self.max_recoveries} restarts with smaller "
                     "steps" if self.max_recoveries else "")
            raise DivergenceError(
                f"loss diverged to {value} at epoch {self.epoch}, step {self.epoch_batches - 1} "
                f"(step {self.step} in all; mean loss of the last steps before it: {previous})"
                f"{tried}; lower the learning rate (the first was "
                f"{self.schedule.learning_rate(0):.3g}), check the data's scale and the "
                f"priors (a learned noise scale on data the model fits exactly, every "
                f"residual 0, has no posterior mode){self._float64_advice()}"
            )
        _assign(self.params, self.answer)
        self.optimizer = self.make_optimizer(self.params, self.schedule.diverged())

    def _float64_advice(self) -> str:
        """``", or fit in float64"`` unless the parameters already are."""
        if all(p.dtype == torch.float64 for p in self.params):
            return ""
        return ", or fit in float64"

    def _finish(self, converged: bool, reason: str) -> None:
        if self.schedule.answer == "average":
            partial = self.step % self.schedule.window
            if not converged and partial:  # stopped mid-window: include what it saw
                self.answer = [total / partial for total in self.window_sum]
            _assign(self.params, self.answer)
        per_pass = max(1, self.source.n_rows // self.batch_size) if self.drop_last else \
            math.ceil(self.source.n_rows / self.batch_size)
        self.result = RunResult(
            n_steps=self.step, n_epochs=self.step / per_pass, converged=converged,
            reason=reason, loss_trace=torch.tensor(self.trace, dtype=torch.float64),
            recoveries=self.recoveries,
        )

    # --- data and randomness --------------------------------------------------------
    def _next_batch(self) -> Batch:
        while True:
            if self._batches is None:
                if self.epoch_seed is None:
                    self.epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
                    self.epoch_batches = 0
                order = torch.Generator().manual_seed(self.epoch_seed)
                self._batches = self.source.epoch(self.batch_size, order, drop_last=self.drop_last)
                for _ in range(self.epoch_batches):  # resuming inside a pass
                    next(self._batches)
            batch = next(self._batches, None)
            if batch is not None:
                self.epoch_batches += 1
                return batch
            self._batches, self.epoch_seed = None, None
            self.epoch += 1

    def _seeded_global_state(self) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.get_rng_state()

    @contextmanager
    def _global_rng(self) -> Iterator[None]:
        """Within the block torch's global generator carries the loop's own state; the
        user's is restored after. A GPU in use is seeded from the loop's generator (so a
        resumed run on a GPU is reproducible, not bit-identical to an uninterrupted one)."""
        devices = _cuda_devices()
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.global_rng)
            if devices:
                torch.cuda.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.generator)))
            try:
                yield
            finally:
                self.global_rng = torch.get_rng_state()

    # --- saved state ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit, as tensors and plain data (copies)."""
        return _copied({
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "epoch": self.epoch,
            "epoch_seed": -1 if self.epoch_seed is None else self.epoch_seed,
            "epoch_batches": self.epoch_batches,
            "recoveries": self.recoveries,
            "averaged": self.averaged,
            "generator": self.generator.get_state(),
            "global_rng": self.global_rng,
            "params": [p.detach() for p in self.params],
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "window_sum": self.window_sum,
            "average_sum": self.average_sum,
            "answer": self.answer,
            "trace": torch.tensor(self.trace, dtype=torch.float64),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of a trainer of the same model and data."""
        if state.get("format") != _FORMAT:
            raise ValueError(f"state must be a saved fit state of format {_FORMAT}, got "
                             f"format {state.get('format')!r}")
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                "state was saved from a different model or run (parameters, rows, batch size "
                f"or step size): it has {_shorten(state['fingerprint'])}, this fit "
                f"{_shorten(self.fingerprint)}"
            )
        state = _copied(state)
        _assign(self.params, state["params"])
        self.optimizer = self.make_optimizer(self.params, self.schedule.learning_rate(0))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        self.global_rng = state["global_rng"]
        self.step, self.epoch = state["step"], state["epoch"]
        self.epoch_seed = None if state["epoch_seed"] < 0 else state["epoch_seed"]
        self.epoch_batches, self.recoveries = state["epoch_batches"], state["recoveries"]
        self.averaged = state["averaged"]
        self.window_sum, self.average_sum = state["window_sum"], state["average_sum"]
        self.answer = state["answer"]
        self.trace = state["trace"].tolist()
        self._batches, self.result = None, None


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Write a :meth:`Trainer.state_dict` to ``path`` (a file of tensors and plain data)."""
    torch.save(state, Path(path))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state`; nothing but tensors and plain data loads."""
    return torch.load(Path(path), weights_only=True)


def _assign(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)


def _copied(value: Any) -> Any:
    """A deep copy of nested dicts, lists and tuples, with tensors detached and cloned."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v) for v in value)
    return value


def _cuda_devices() -> list[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_initialized() else []


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
