"""The training engine: data sources, schedules as pure objects, the loop's averaging, and
saved states that resume bit for bit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import HalfNormal, Normal

import noisybayes as nb
from noisybayes.engine import (
    Decision,
    LinearDecay,
    StallSchedule,
    TensorSource,
    Trainer,
    Window,
    load_state,
    save_state,
)
from noisybayes.infer.fit import FamilyObjective, _build_family, _whitened_curvature
from noisybayes.infer.laplace import laplace
from noisybayes.infer.objective import LogJoint
from noisybayes.model.layout import ParamLayout
from noisybayes.nn.train import NetworkObjective


# --- data sources -----------------------------------------------------------------------
def _rows(n: int = 10) -> TensorSource:
    x = torch.arange(n, dtype=torch.float64)[:, None]
    return TensorSource((x,), x[:, 0] * 10)


def test_one_pass_partitions_the_rows_and_keeps_x_and_y_together():
    batches = list(_rows().epoch(3, torch.Generator().manual_seed(0), drop_last=False))
    assert [len(b[1]) for b in batches] == [3, 3, 3, 1]
    rows = torch.cat([b[0][0][:, 0] for b in batches])
    assert sorted(rows.tolist()) == list(range(10))
    assert all(torch.equal(b[0][0][:, 0] * 10, b[1]) for b in batches)


def test_drop_last_yields_only_full_batches_and_a_pass_repeats_from_its_generator():
    first = list(_rows().epoch(3, torch.Generator().manual_seed(4), drop_last=True))
    again = list(_rows().epoch(3, torch.Generator().manual_seed(4), drop_last=True))
    assert [len(b[1]) for b in first] == [3, 3, 3]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))


def test_shards_split_the_rows_and_keep_the_whole_data_size():
    source = _rows(11)
    shards = [source.shard(rank, 3) for rank in range(3)]
    assert [s.n_rows for s in shards] == [4, 4, 3] and {s.n_data for s in shards} == {11}
    rows = torch.cat([s.inputs[0][:, 0] for s in shards])
    assert sorted(rows.tolist()) == list(range(11))
    with pytest.raises(ValueError, match=r"rank must be in \[0, 3\), got 3"):
        source.shard(3, 3)


# --- schedules --------------------------------------------------------------------------
def _window(step: int, mean_loss: float, error: float = 0.0) -> Window:
    return Window(step, 100, mean_loss, error)


def test_stall_schedule_cuts_the_step_when_progress_stalls():
    schedule = StallSchedule(0.1, n_data=100)
    assert schedule.observe(_window(100, 5.0)) == Decision()  # no previous window yet
    assert schedule.learning_rate(100) == 0.1
    schedule.observe(_window(200, 4.0))  # gains 100 nats: still improving
    assert schedule.learning_rate(200) == 0.1
    schedule.observe(_window(300, 4.0))  # no gain: cut by 0.3
    assert math.isclose(schedule.learning_rate(300), 0.03)
    schedule.observe(_window(400, 4.0))  # never below a tenth of the first step
    assert math.isclose(schedule.learning_rate(400), 0.01)


def test_stall_schedule_gains_are_judged_against_the_monte_carlo_error():
    """A gain of 2 nats hides in standard errors of 1 nat each (2 hypot(1, 1) = 2.83)."""
    schedule = StallSchedule(0.1, n_data=100)
    schedule.observe(_window(100, 0.05, 0.01))
    schedule.observe(_window(200, 0.03, 0.01))
    assert math.isclose(schedule.learning_rate(200), 0.03)


def test_stall_schedule_averages_restarts_and_stops():
    schedule = StallSchedule(0.1, n_data=1, average_windows=2)
    schedule.current = schedule.final_learning_rate
    schedule.observe(_window(100, 1.0))
    assert schedule.observe(_window(200, 1.0)).averaging == "add"
    assert schedule.observe(_window(300, 0.5)) == Decision("restart")  # improving again
    assert schedule.observe(_window(400, 0.5)).averaging == "add"
    final = schedule.observe(_window(500, 0.5))
    assert final.stop and final.converged and final.averaging == "add"
    assert "averaged over the last 200 steps" in final.reason


def test_stall_schedule_state_round_trips_and_divergence_cuts_the_step():
    schedule = StallSchedule(0.1, n_data=10)
    schedule.observe(_window(100, 1.0, 0.1))
    assert math.isclose(schedule.diverged(), 0.01)
    copy = StallSchedule(0.5, n_data=1)
    copy.load_state_dict(schedule.state_dict())
    assert copy == schedule


def test_linear_decay_reaches_a_tenth_and_stops_at_its_steps():
    schedule = LinearDecay(1.0, total_steps=10, window=5)
    assert [schedule.learning_rate(t) for t in (0, 5, 10)] == [1.0, 0.55, pytest.approx(0.1)]
    assert not schedule.observe(_window(5, 1.0)).stop
    assert schedule.observe(_window(10, 1.0)).stop


# --- the loop ---------------------------------------------------------------------------
class _Quadratic:
    """loss = (p - 1)^2 / 2 with a deterministic gradient; records every iterate it sees."""

    def __init__(self) -> None:
        self.p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        self.seen: list[float] = []

    def parameters(self):
        return [self.p]

    def loss(self, batch):
        self.seen.append(float(self.p.detach()))
        return 0.5 * (self.p - 1.0).pow(2).sum()


class _Scripted:
    """A schedule that replays given decisions, one per window; the tenth step is of size
    zero, so the last iterate is the one the objective saw last."""

    window, answer, length = 2, "average", None

    def __init__(self, decisions):
        self.decisions = list(decisions)

    def learning_rate(self, step):
        return 0.1 if step < 9 else 0.0

    def observe(self, window):
        return self.decisions.pop(0)

    def diverged(self):
        return 0.01

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_the_answer_is_the_mean_of_the_windows_the_schedule_averaged():
    objective = _Quadratic()
    script = [Decision(), Decision("add"), Decision("restart"), Decision("add"),
              Decision("add", stop=True, converged=True, reason="done")]
    trainer = Trainer(objective, _rows(), _Scripted(script), batch_size=10,
                      generator=torch.Generator().manual_seed(0), max_steps=100)
    result = trainer.run()
    iterates = objective.seen[1:] + objective.seen[-1:]  # the iterate after each step
    windows = [sum(iterates[i : i + 2]) / 2 for i in range(0, 10, 2)]
    assert result.converged and result.n_steps == 10 and result.reason == "done"
    assert float(objective.p.detach()) == pytest.approx((windows[3] + windows[4]) / 2, abs=1e-15)


class _Line(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 10.0), shape=(2,))
        self.sigma = nb.param(HalfNormal(torch.tensor(5.0, dtype=torch.float64)))

    def forward(self, x):
        return Normal(x @ self.beta, self.sigma)


def _fit_trainer(model: nb.Model, seed: int = 0) -> Trainer:
    """A trainer as ``nb.fit`` builds it: Laplace start, full-rank family, minibatches."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5], dtype=torch.float64) + torch.randn(400, generator=g,
                                                                           dtype=torch.float64)
    layout = ParamLayout(model)
    log_joint = LogJoint(model, layout)
    mode = laplace(log_joint, ((x,), y), torch.zeros(layout.size, dtype=x.dtype), g, 10_000)
    family = _build_family("fullrank", mode.loc, mode.precision, 0)
    gen = torch.Generator().manual_seed(seed)
    objective = FamilyObjective(log_joint, family, 400, 16, gen, None,
                                _whitened_curvature(family, mode.precision))
    return Trainer(objective, TensorSource((x,), y), StallSchedule(0.05, 400, window=20),
                   batch_size=64, generator=gen, max_steps=400, max_recoveries=3,
                   fingerprint=",".join(layout.names))


def test_a_fit_interrupted_and_restored_from_a_file_ends_bit_identical(tmp_path):
    whole = _fit_trainer(_Line())
    expected = whole.run()
    first = _fit_trainer(_Line())
    assert first.run(until=137) is None and first.step == 137  # mid-window, mid-pass
    save_state(first.state_dict(), tmp_path / "fit.pt")
    resumed = _fit_trainer(_Line(), seed=99)  # a fresh object, other randomness
    resumed.load_state_dict(load_state(tmp_path / "fit.pt"))
    result = resumed.run()
    assert result.n_steps == expected.n_steps and result.reason == expected.reason
    assert torch.equal(result.loss_trace, expected.loss_trace)
    for a, b in zip(resumed.params, whole.params, strict=True):
        assert torch.equal(a, b)


def test_a_network_interrupted_and_restored_ends_bit_identical():
    """The weight noise comes from torch's global generator: its state is saved too."""

    def trainer() -> tuple[Trainer, nn.Module]:
        torch.manual_seed(0)
        net = nb.bayesian(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)))
        x = torch.linspace(-1, 1, 60)[:, None].repeat(1, 3)
        y = x[:, :1].sin()
        objective = NetworkObjective(net, nb.nn.Gaussian(), 60, 1, 1.0)
        loop = Trainer(objective, TensorSource((x,), y), LinearDecay(0.01, 40, 4),
                       batch_size=16, generator=torch.Generator().manual_seed(1),
                       max_steps=40, drop_last=False)
        return loop, net

    whole, whole_net = trainer()
    whole.run()
    first, _ = trainer()
    first.run(until=10)
    state = first.state_dict()
    torch.manual_seed(123)  # the user's global generator in between: must not matter
    resumed, net = trainer()
    resumed.load_state_dict(state)
    resumed.run()
    assert torch.equal(torch.tensor(resumed.trace), torch.tensor(whole.trace))
    for a, b in zip(net.parameters(), whole_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_loop_leaves_the_users_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _fit_trainer(_Line()).run(until=30)
    assert torch.equal(torch.rand(3), expected)


def test_a_state_from_another_model_is_refused():
    class Other(nb.Model):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nb.param(Normal(torch.tensor(0.0, dtype=torch.float64), 1.0),
                                  shape=(2,))
            self.sigma = nb.param(HalfNormal(torch.tensor(5.0, dtype=torch.float64)))

        def forward(self, x):
            return Normal(x @ self.gamma, self.sigma)

    state = _fit_trainer(_Line()).state_dict()
    with pytest.raises(ValueError, match=r"state was saved from a different model or run "
                                         r"\(parameters, rows, batch size or step size\): it "
                                         r"has rows=.*\|beta,sigma"):
        _fit_trainer(Other()).load_state_dict(state)
    with pytest.raises(ValueError, match="state must be a saved fit state of format 1"):
        _fit_trainer(_Line()).load_state_dict({"format": 0})


def test_a_saved_state_holds_only_tensors_and_plain_data(tmp_path):
    trainer = _fit_trainer(_Line())
    trainer.run(until=20)
    save_state(trainer.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # refuses pickled objects
    assert state["step"] == 20 and "|beta,sigma|" in state["fingerprint"]


def test_the_optimiser_step_is_a_swappable_part():
    """Plain SGD on (p - 1)^2 / 2 at step 0.1: p_t = 1 - 0.9^t exactly (lr 0 on step 10)."""
    objective = _Quadratic()
    schedule = _Scripted([Decision()] * 4 + [Decision(stop=True, reason="done")])
    schedule.answer = "last"

    def sgd(params, learning_rate):
        return torch.optim.SGD(params, lr=learning_rate)

    Trainer(objective, _rows(), schedule, batch_size=10, optimizer=sgd,
            generator=torch.Generator().manual_seed(0), max_steps=100).run()
    assert objective.seen == pytest.approx([1 - 0.9**t for t in range(10)], abs=1e-15)


class _Exploding(_Quadratic):
    """A loss that is NaN from the first step, in the parameters' dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.p = torch.zeros(1, dtype=dtype, requires_grad=True)

    def loss(self, batch):
        return self.p.sum() * float("nan")


@pytest.mark.parametrize(("dtype", "advised"), [(torch.float32, True), (torch.float64, False)])
def test_a_divergence_advises_float64_only_when_not_already_in_it(dtype, advised):
    trainer = Trainer(_Exploding(dtype), _rows(), StallSchedule(0.1, 10, 2, 1), batch_size=10,
                      generator=torch.Generator().manual_seed(0), max_steps=20,
                      max_recoveries=0, progress=False)
    with pytest.raises(nb.DivergenceError, match="loss diverged") as error:
        trainer.run()
    assert ("fit in float64" in str(error.value)) is advised
