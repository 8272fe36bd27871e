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


def test_a_checkpoint_of_another_model_or_file_is_refused(tmp_path):
    path = tmp_path / "net.pt"
    _train(nb.nn.Gaussian(), checkpoint=path, checkpoint_every=5)
    x, y = _rows()
    other = nb.bayesian(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match="state was saved from a different model"):
        nb.nn.train(other, x, y, likelihood=nb.nn.Gaussian(), n_epochs=1, checkpoint=path)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"^checkpoint must be a file written by a "
                                         r"checkpointed run, got '.*junk.pt'"):
        _train(nb.nn.Gaussian(), checkpoint=junk)
    with pytest.raises(ValueError, match="checkpoint_every must be"):
        _train(nb.nn.Gaussian(), checkpoint=path, checkpoint_every=0)
