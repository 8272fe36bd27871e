"""A Bayesian neural network trained in an ordinary PyTorch loop.

``nb.bayesian`` turns a ``torch.nn.Sequential`` into a network whose weights are Gaussian
(``loc + scale * eps``); ``nb.elbo_loss`` replaces the squared error with the negative ELBO
per datum (the Gaussian likelihood with a learned noise scale, plus KL(q || prior) / N);
everything else is the usual loop with Adam. ``nb.nn.predict`` then gives the predictive
mean and sd. On a noisy sine observed on [-3, 3] the predictive sd is about the noise inside
the data's range and grows outside it, where the weights are uncertain.

    python examples/network_loop.py
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

import noisybayes as nb

NOISE_SCALE = 0.1


def simulate(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = sin(x) + 0.1 eps`` at ``n`` points ``x ~ U(-3, 3)``; ``x`` shaped ``(n, 1)``."""
    x = torch.rand(n, 1, generator=generator) * 6.0 - 3.0
    y = torch.sin(x[:, 0]) + NOISE_SCALE * torch.randn(n, generator=generator)
    return x, y


def main() -> None:
    torch.manual_seed(0)  # the network's initial weights
    generator = torch.Generator().manual_seed(0)
    x, y = simulate(400, generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True, generator=generator)

    net = nb.bayesian(
        torch.nn.Sequential(torch.nn.Linear(1, 50), torch.nn.ReLU(), torch.nn.Linear(50, 1))
    )
    lik = nb.nn.Gaussian()  # learned noise scale
    opt = torch.optim.Adam([*net.parameters(), *lik.parameters()], lr=2e-2)
    for epoch in range(1, 151):
        for xb, yb in loader:
            opt.zero_grad()
            loss = nb.elbo_loss(net, xb, yb, likelihood=lik, n_data=loader, generator=generator)
            loss.backward()
            opt.step()
        if epoch % 50 == 0:
            print(f"epoch {epoch}: loss per datum {loss.item():.3f}")

    print(f"learned noise sd {lik.scale.item():.3f} (true {NOISE_SCALE})")
    x_new = torch.tensor([[-6.0], [-2.0], [0.0], [2.0], [6.0]])
    pred = nb.nn.predict(net, x_new, likelihood=lik, n_samples=500, generator=generator)
    for value, mean, sd, epistemic in zip(
        x_new[:, 0].tolist(),
        pred.mean[:, 0].tolist(),
        pred.sd[:, 0].tolist(),
        pred.epistemic_sd[:, 0].tolist(),
        strict=True,
    ):
        where = "inside " if abs(value) <= 3.0 else "outside"
        print(
            f"x = {value:+.1f} ({where} the data): mean {mean:+.2f}, sd {sd:.2f} "
            f"(epistemic {epistemic:.2f}), sin(x) = {torch.sin(torch.tensor(value)).item():+.2f}"
        )


if __name__ == "__main__":
    main()
