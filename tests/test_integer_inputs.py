"""Integer tensors reach ``forward`` as they are: a group index can index a parameter."""

from __future__ import annotations

import torch
from torch.distributions import HalfNormal, Normal

import noisybayes as nb


class Groups(nb.Model):
    """``y ~ Normal(z[g], sigma)``: one mean per group, ``g`` an integer index."""

    def __init__(self, n_groups: int) -> None:
        super().__init__()
        self.z = nb.param(Normal(torch.zeros(n_groups, dtype=torch.float64), 100.0))
        self.sigma = nb.param(HalfNormal(torch.tensor(5.0, dtype=torch.float64)))
        self.seen: set[torch.dtype] = set()

    def forward(self, g: torch.Tensor, w: torch.Tensor) -> Normal:
        self.seen.update((g.dtype, w.dtype))
        return Normal(self.z[g] + 0.0 * w, self.sigma)


def test_a_group_index_reaches_forward_as_an_integer():
    """With a prior 100 times wider than the noise, each group's posterior mean is its
    sample mean to within 0.01 of the noise sd (shrinkage ~ sigma^2 / (n_k 100^2))."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(0, 3, (90,), generator=gen)
    w = torch.ones(90, dtype=torch.float32)
    y = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)[g] + torch.randn(
        90, generator=gen, dtype=torch.float64
    )
    model = Groups(3)
    post = nb.fit(model, (g, w), y, seed=0, progress=False)
    assert model.seen == {torch.int64, torch.float64}  # the float input joins y's dtype
    sample_means = torch.stack([y[g == k].mean() for k in range(3)])
    assert torch.allclose(post.mean["z"], sample_means, atol=0.01 * float(post.mean["sigma"]))
    new = torch.tensor([2, 0])
    prediction = post.predict((new, torch.ones(2)), n_samples=200, seed=0)
    # 200 draws of z (sd ~0.17): Monte Carlo error ~0.012, so 0.05 is 4 of them
    assert torch.allclose(prediction.mean, post.mean["z"][new], atol=0.05)
    assert post.check((g, w), y, n_draws=2000, seed=0).n_draws == 2000
