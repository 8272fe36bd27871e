"""``IVONPosterior``: a network trained by :class:`noisybayes.optim.IVON` as an ``nb.Posterior``.

The optimizer's posterior is mean-field Gaussian: every entry of every parameter it holds
is ``N(m, sigma^2)``, ``m`` the parameter's value and ``sigma = 1 / sqrt(ess (h + delta))``.
The posterior keeps a copy of both, so further training does not change it; parameters
the optimizer does not hold stay at their values. The predictive is Monte Carlo over
weight draws, evaluated in batches of draws by ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, vmap

from noisybayes._checks import check_positive_int
from noisybayes._rng import make_generator
from noisybayes.infer.posterior import FitInfo
from noisybayes.nn.likelihoods import Likelihood
from noisybayes.nn.posterior import NetworkPosterior
from noisybayes.optim import IVON

__all__ = ["IVONPosterior"]

_DRAW_ELEMENTS = 1 << 22  # weight entries drawn at once when evaluating the network


class IVONPosterior(NetworkPosterior):
    """The mean-field Gaussian that an :class:`~noisybayes.optim.IVON` optimizer holds over
    ``network``'s weights, with ``likelihood`` ``p(y | x, W)``.

    ``info`` says how the fit went (by default: ``family="ivon"``, the optimizer's step
    count, ``n_data`` its ``ess``, an empty loss trace since the loop was the user's);
    ``data`` is the ``(x, y)`` it was trained on, used by :meth:`to_arviz`. Draws, summary
    and predictive are those of a :class:`NetworkPosterior`.
    """

    def __init__(self, network: nn.Module, likelihood: Likelihood, optimizer: IVON,
                 info: FitInfo | None = None,
                 data: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if not isinstance(optimizer, IVON):
            raise TypeError(f"optimizer must be a noisybayes.optim.IVON, got {optimizer!r}")
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.locs: dict[str, torch.Tensor] = {}
        self.scales: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, p in network.named_parameters():
                if id(p) in held:
                    self.locs[name] = p.detach().clone()
                    self.scales[name] = optimizer.posterior_scale(p).detach().clone()
        if not self.locs:
            raise ValueError("optimizer must hold parameters of network, got none of them")
        if info is None:
            first = optimizer.param_groups[0]
            steps = max(int(optimizer.state[p]["step"]) for p in first["params"])
            info = FitInfo(family="ivon", n_steps=steps, converged=False,
                           reason="trained in the user's loop", loss_trace=torch.zeros(0),
                           n_data=round(first["ess"]), batch_size=0,
                           n_samples=optimizer.mc_samples, seconds=0.0)
        super().__init__(network, likelihood, info, data)

    def __repr__(self) -> str:
        return (f"IVONPosterior(network={type(self.network).__name__}, "
                f"likelihood={type(self.likelihood).__name__}, n_data={self.info.n_data})")

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.locs.values())).dtype

    def _gaussian_weights(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for name, loc in self.locs.items():
            yield name, loc, self.scales[name]

    def _draw(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` draws ``loc + scale * eps`` per tensor, ``{name: (n, *shape)}``, on the
        weights' device (``eps`` from ``generator``)."""
        out = {}
        for name, loc in self.locs.items():
            eps = torch.randn((n, *loc.shape), generator=generator, dtype=loc.dtype,
                              device=generator.device).to(loc.device)
            out[name] = loc + self.scales[name] * eps
        return out

    def sample(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``n`` draws of every weight tensor the optimizer holds, ``{name: (n, *shape)}``."""
        n = check_positive_int("n", n)
        draws = self._draw(n, make_generator(seed, generator))
        return {name: d.cpu() for name, d in draws.items()}

    def sample_outputs(self, x: torch.Tensor, n: int,
                       generator: torch.Generator | None) -> torch.Tensor:
        """``n`` outputs at ``x`` under weight draws, ``(n, B, ...)``: the network is called
        with the drawn weights (``functional_call``), batches of draws vectorised."""
        gen = generator if generator is not None else make_generator()
        n_weights = sum(loc.numel() for loc in self.locs.values())
        chunk = max(1, min(n, _DRAW_ELEMENTS // n_weights))

        def forward(weights: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.network, weights, (x,))

        parts = []
        for start in range(0, n, chunk):
            parts.append(vmap(forward)(self._draw(min(chunk, n - start), gen)))
        return torch.cat(parts)

