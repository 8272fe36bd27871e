"""A model of your own, fitted with ``nb.fit``: Poisson regression of counts.

The model is an ``nb.Model`` whose parameters are declared with ``nb.param(prior)`` and whose
``forward`` returns the distribution of ``y`` for one set of parameter values. ``nb.fit``
finds the variational posterior; the script prints its summary, the diagnostic report
(Pareto k-hat: can the approximation be trusted?) and the posterior predictive at new inputs.

    python examples/custom_model.py
"""

from __future__ import annotations

import torch
from torch.distributions import Normal, Poisson

import noisybayes as nb


class PoissonRegression(nb.Model):
    """``y ~ Poisson(exp(alpha + x . beta))`` with Normal priors on the log scale."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.alpha = nb.param(Normal(0.0, 5.0))
        self.beta = nb.param(Normal(0.0, 1.0), shape=(n_features,))

    def forward(self, x: torch.Tensor) -> Poisson:
        return Poisson(torch.exp(self.alpha + x @ self.beta))


def simulate(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of two standard-normal features and counts with rate ``exp(1 + 0.5 x1 - 0.3 x2)``."""
    x = torch.randn(n, 2, generator=generator)
    rate = torch.exp(1.0 + x @ torch.tensor([0.5, -0.3]))
    return x, torch.poisson(rate, generator=generator)


def main() -> None:
    x, y = simulate(500, torch.Generator().manual_seed(0))
    post = nb.fit(PoissonRegression(2), x, y, family="fullrank", seed=0, progress=False)

    print("posterior (true values: alpha 1.0, beta [0.5, -0.3])")
    print(post.summary().round(3).to_string())
    print()
    print(post.check(seed=0))
    print()
    x_new = torch.tensor([[0.0, 0.0], [2.0, -2.0]])
    pred = post.predict(x_new, seed=0)
    for row, mean, sd in zip(x_new.tolist(), pred.mean.tolist(), pred.sd.tolist(), strict=True):
        print(f"predicted count at x = {row}: mean {mean:.2f}, sd {sd:.2f}")


if __name__ == "__main__":
    main()
