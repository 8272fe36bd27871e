"""Checkpoints: a run stopped part-way and restarted with the same arguments ends as the
uninterrupted run would, bit for bit (on the CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import noisybayes as nb


class Stop(Exception):
    """The run is stopped from outside (a killed job, a pre-empted machine)."""


class StoppingGaussian(nb.nn.Gaussian):
    """A Gaussian likelihood whose ``calls``-th evaluation raises :class:`Stop`."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def distribution(self, output: torch.Tensor) -> torch.distributions.Normal:
        self.calls -= 1
        if self.calls == 0:
            raise Stop
        return super().distribution(output)


def _rows() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 2, generator=g)
    return x, torch.sin(x[:, :1]) + 0.1 * torch.randn(120, 1, generator=g)


def _network() -> nn.Module:
    torch.manual_seed(1)
    return nb.bayesian(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)))


def _train(likelihood: nb.nn.Likelihood, **kwargs):
    net = _network()
    x, y = _rows()
    post = nb.nn.train(net, x, y, likelihood=likelihood, n_epochs=6, batch_size=32,
                       generator=torch.Generator().manual_seed(2), **kwargs)
    return net, likelihood, post


def test_a_stopped_network_run_resumes_to_the_uninterrupted_answer(tmp_path):
    """24 steps (6 epochs of 4 batches); the first run stops in step 18, after the
    checkpoint of step 15; the restart reads it, takes only the 9 steps left, and ends
    bit-identical to a run that never stopped: weights, noise scale and loss trace."""
    path = tmp_path / "net.pt"
    whole_net, whole_lik, whole = _train(nb.nn.Gaussian())
    with pytest.raises(Stop):
        _train(StoppingGaussian(calls=18), checkpoint=path, checkpoint_every=5)
    assert path.exists()
    counting = StoppingGaussian(calls=1000)  # counts down, never reaches 0 here
    net, lik, post = _train(counting, checkpoint=path, checkpoint_every=5)
    assert 1000 - counting.calls == 24 - 15
    for a, b in zip(net.parameters(), whole_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(lik.scale, whole_lik.scale)
    assert torch.equal(post.info.loss_trace, whole.info.loss_trace)
    assert post.info.n_steps == whole.info.n_steps == 24


def test_a_checkpoint_of_another_model_run_or_file_is_refused(tmp_path):
    """Another network, the same network on other rows or in other batches: each resume
    would continue a different run, so each is refused naming what differs."""
    path = tmp_path / "net.pt"
    _train(nb.nn.Gaussian(), checkpoint=path, checkpoint_every=5)
    x, y = _rows()
    other = nb.bayesian(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match="state was saved from a different model or run"):
        nb.nn.train(other, x, y, likelihood=nb.nn.Gaussian(), n_epochs=1, checkpoint=path)
    with pytest.raises(ValueError, match=r"it has rows=\d+,batch=32.*this fit rows=\d+,batch=16"):
        nb.nn.train(_network(), x, y, likelihood=nb.nn.Gaussian(), n_epochs=6, batch_size=16,
                    checkpoint=path)
    with pytest.raises(ValueError, match=r"it has rows=(\d+),.*this fit rows=(?!\1,)\d+,"):
        nb.nn.train(_network(), x[:-10], y[:-10], likelihood=nb.nn.Gaussian(), n_epochs=6,
                    batch_size=32, checkpoint=path)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"^checkpoint must be a file written by a "
                                         r"checkpointed run, got '.*junk.pt'"):
        _train(nb.nn.Gaussian(), checkpoint=junk)
    other_world = tmp_path / "two.pt"
    torch.save({"world_size": 2, "runs": {}}, other_world)
    with pytest.raises(ValueError, match=r"was written by a run of 2 process\(es\); this run "
                                         r"has 1: resume it with as many"):
        _train(nb.nn.Gaussian(), checkpoint=other_world)
    with pytest.raises(ValueError, match="checkpoint_every must be"):
        _train(nb.nn.Gaussian(), checkpoint=path, checkpoint_every=0)


class Line(nb.Model):
    """``y ~ Normal(x @ beta, sigma)``, ``beta ~ N(0, 10)``, ``sigma ~ HalfNormal(5)``."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64),
                                                        10.0), shape=(2,))
        self.sigma = nb.param(torch.distributions.HalfNormal(torch.tensor(5.0,
                                                                          dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(x @ self.beta, self.sigma)


class Windows:
    """A ``callback`` that counts the windows it sees and raises :class:`Stop` at the
    ``stop_at``-th (never, by default)."""

    def __init__(self, stop_at: int = 0) -> None:
        self.seen, self.stop_at = 0, stop_at

    def __call__(self, state: object) -> None:
        self.seen += 1
        if self.seen == self.stop_at:
            raise Stop


def test_a_stopped_fit_resumes_to_the_uninterrupted_posterior(tmp_path):
    """``nb.fit`` by Adam on minibatches with ``family="auto"`` (k-hat after the run), stopped
    in its third window after the checkpoint at step 200: restarted, it sees only the
    windows after step 200 and ends with the uninterrupted fit's posterior, bit for bit,
    k-hat included (its draws come from the generator the checkpoint restored)."""
    x, y = _rows()
    x, y = x.double(), y[:, 0].double()
    settings = {"seed": 3, "solver": "adam", "batch_size": 40}
    path = tmp_path / "fit.pt"
    whole_windows = Windows()
    whole = nb.fit(Line(), x, y, callback=whole_windows, **settings)
    with pytest.raises(Stop):
        nb.fit(Line(), x, y, callback=Windows(stop_at=3), checkpoint=path,
               checkpoint_every=200, **settings)
    windows = Windows()
    post = nb.fit(Line(), x, y, callback=windows, checkpoint=path, checkpoint_every=200,
                  **settings)
    assert whole_windows.seen > 3 and windows.seen == whole_windows.seen - 2
    assert torch.equal(post.family.mean(), whole.family.mean())
    assert torch.equal(post.family.variance(), whole.family.variance())
    assert post.info.khat == whole.info.khat and post.info.n_steps == whole.info.n_steps


def test_a_stopped_ivon_run_resumes_to_the_uninterrupted_answer(tmp_path):
    """``nb.nn.train_ivon``: the checkpoint holds IVON's Hessian estimate and its generator
    with the loop's state; stopped in step 18 of 24 (one weight draw a step) and restarted,
    the run ends with the uninterrupted run's means, sds (from the Hessian) and trace."""
    def run(likelihood: nb.nn.Likelihood, **kwargs):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        x, y = _rows()
        post = nb.nn.train_ivon(net, x, y, likelihood=likelihood, n_epochs=6, batch_size=32,
                                generator=torch.Generator().manual_seed(2), **kwargs)
        return {**{f"loc {k}": v for k, v in post.locs.items()},
                **{f"scale {k}": v for k, v in post.scales.items()},
                "trace": post.info.loss_trace}

    path = tmp_path / "ivon.pt"
    whole = run(nb.nn.Gaussian())
    with pytest.raises(Stop):
        run(StoppingGaussian(calls=18), checkpoint=path, checkpoint_every=5)
    counting = StoppingGaussian(calls=1000)
    resumed = run(counting, checkpoint=path, checkpoint_every=5)
    assert 1000 - counting.calls == 24 - 15
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_a_checkpoint_in_a_missing_folder_is_refused_before_training(tmp_path):
    counting = nb.nn.Gaussian()
    with pytest.raises(ValueError, match=r"checkpoint must name a file in an existing folder, "
                                         r"got '.*no/net.pt' \(no folder"):
        _train(counting, checkpoint=tmp_path / "no" / "net.pt", checkpoint_every=5)
