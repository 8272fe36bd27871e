"""Schedules: small pure objects that set the step size and decide when training stops.

The loop reports each window of steps as a :class:`Window` and acts on the
:class:`Decision` it gets back; a schedule holds only plain numbers, so its state saves as
it is and its branches are tested by feeding it windows, without running a fit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

__all__ = ["Decision", "LinearDecay", "Schedule", "StallSchedule", "Window"]

Averaging = Literal["none", "restart", "add"]


@dataclass(frozen=True)
class Window:
    """The per-datum loss (``-ELBO / N``) over one window of steps: its mean and the
    standard error of that mean, ``sd / sqrt(steps)``."""

    step: int
    steps: int
    mean_loss: float
    standard_error: float


@dataclass(frozen=True)
class Decision:
    """What the loop does after a window.

    ``averaging``: ``"none"`` keeps the
    window's mean iterate as the answer so far, ``"restart"`` drops the running average of
    windows, ``"add"`` adds the window to it. ``stop`` ends training (``converged`` says
    whether by the convergence test, ``reason`` why).
    """

    averaging: Averaging = "none"
    stop: bool = False
    converged: bool = False
    reason: str = ""


class Schedule(Protocol):
    """The step size per step, a decision per window, and a cut after a non-finite loss.
    ``answer`` says whether training ends on the average of the iterates that the
    decisions kept (``"average"``) or on the last iterate (``"last"``)."""

    window: int
    answer: Literal["average", "last"]

    @property
    def length(self) -> int | None:
        """The number of steps when it is fixed in advance (a progress bar's total)."""
        ...

    def learning_rate(self, step: int) -> float: ...

    def observe(self, window: Window) -> Decision: ...

    def diverged(self) -> float:
        """The step size to restart with after a non-finite loss."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _PlainState:
    """``state_dict`` of a dataclass of plain numbers: its fields."""

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# An ELBO gain (nats, whole data set) per window below which progress counts as stalled
# even when the Monte Carlo noise is too small to hide it.
NEGLIGIBLE_GAIN = 0.01


@dataclass
class StallSchedule(_PlainState):
    """Cut the step when progress stalls, then average the iterates (``nb.fit``'s rule).

    A window is *stationary* when its whole-data ELBO gain over the previous window is below
    ``2 * hypot(se, se_previous) + 0.01`` nats (no significant progress). While the step is
    above ``final_learning_rate`` (a tenth of the first) a stationary window cuts it by
    ``cut``; at the final step, stationary windows are averaged (Polyak averaging) and a
    window that still improves restarts the average. Training stops once
    ``average_windows`` stationary windows are averaged.
    """

    initial_learning_rate: float
    n_data: int
    window: int = 100
    average_windows: int = 4
    cut: float = 0.3
    divergence_cut: float = 0.1
    current: float = math.nan
    previous_mean: float = math.nan
    previous_error: float = math.nan
    averaged: int = 0
    answer: Literal["average", "last"] = "average"

    def __post_init__(self) -> None:
        if math.isnan(self.current):
            self.current = self.initial_learning_rate

    @property
    def length(self) -> int | None:
        return None  # stops when the iterates are stationary

    @property
    def final_learning_rate(self) -> float:
        return self.initial_learning_rate * 0.1

    def learning_rate(self, step: int) -> float:
        return self.current

    def observe(self, window: Window) -> Decision:
        # losses are per datum: the gain in whole-data ELBO is the drop in loss times N
        mean, error = window.mean_loss * self.n_data, window.standard_error * self.n_data
        stationary = not math.isnan(self.previous_mean) and (
            self.previous_mean - mean < 2 * math.hypot(error, self.previous_error) + NEGLIGIBLE_GAIN
        )
        self.previous_mean, self.previous_error = mean, error
        if self.current > self.final_learning_rate:  # search: cut the step when progress stalls
            if stationary:
                self.current = max(self.current * self.cut, self.final_learning_rate)
            return Decision()
        if not stationary:  # at the final step but still improving: average afresh
            self.averaged = 0
            return Decision("restart")
        self.averaged += 1
        if self.averaged < self.average_windows:
            return Decision("add")
        reason = (
            f"ELBO stationary; iterates averaged over the last {self.averaged * self.window} "
            f"steps at step size {self.current:.1e}"
        )
        return Decision("add", stop=True, converged=True, reason=reason)

    def diverged(self) -> float:
        self.current *= self.divergence_cut
        return self.current



@dataclass
class LinearDecay(_PlainState):
    """A step size decayed linearly from ``initial_learning_rate`` to a tenth of it over
    ``total_steps``: ``lr(t) = lr_0 (1 - 0.9 t / T)``; windows are epochs, training stops at
    ``total_steps`` and the answer is the last iterate (``nb.nn.train``'s rule)."""

    initial_learning_rate: float
    total_steps: int
    window: int
    answer: Literal["average", "last"] = "last"

    @property
    def length(self) -> int | None:
        return self.total_steps

    def learning_rate(self, step: int) -> float:
        return self.initial_learning_rate * (1.0 - 0.9 * step / self.total_steps)

    def observe(self, window: Window) -> Decision:
        done = window.step >= self.total_steps
        reason = f"{self.total_steps} steps done" if done else ""
        return Decision(stop=done, reason=reason)

    def diverged(self) -> float:
        return math.nan  # no restart: the loop raises

