"""``Posterior``: what every fit returns: draws, summaries and the posterior predictive."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import torch
from torch.func import vmap

from noisybayes._rng import make_generator, seeded_from
from noisybayes.infer.data import as_inputs
from noisybayes.infer.objective import LogJoint, no_validation
from noisybayes.math.families import GaussianFamily
from noisybayes.math.intervals import equal_tailed, hdi
from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model

__all__ = ["FitInfo", "Posterior", "Prediction"]

_SUMMARY_DRAWS = 10_000


@dataclass(frozen=True)
class FitInfo:
    """How a fit went.

    ``elbo_trace`` holds the per-datum ELBO estimate of every step; ``reason`` says why the
    fit stopped and ``converged`` whether that was by the convergence test.
    """

    family: str
    n_steps: int
    converged: bool
    reason: str
    elbo_trace: torch.Tensor
    n_data: int
    batch_size: int
    n_samples: int
    seconds: float
    laplace_converged: bool
    laplace_positive_definite: bool
    recoveries: int = 0


@dataclass(frozen=True)
class Prediction:
    """The posterior predictive at new inputs, each field shaped like ``y`` of those rows.

    ``mean`` is ``E[y]``; ``sd`` the total predictive sd, with ``sd^2 = epistemic_sd^2 +
    aleatoric_sd^2`` (parameter uncertainty ``Var_q[E[y|theta]]`` plus noise
    ``E_q[Var[y|theta]]``). ``lower``/``upper`` bound the central predictive interval of
    ``level`` for a new observation; ``mean_lower``/``mean_upper`` the credible interval of
    ``E[y | x, theta]``.
    """

    mean: torch.Tensor
    sd: torch.Tensor
    epistemic_sd: torch.Tensor
    aleatoric_sd: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    mean_lower: torch.Tensor
    mean_upper: torch.Tensor
    level: float


class Posterior:
    """A Gaussian approximation ``q`` of the posterior of an ``nb.Model``'s parameters.

    Draws live in the unconstrained space and are mapped to each parameter's support, so
    ``mean``, ``sd``, ``sample`` and ``summary`` are on the constrained (user's) scale.
    """

    def __init__(
        self, model: Model, layout: ParamLayout, family: GaussianFamily, info: FitInfo
    ) -> None:
        self.model = model
        self.layout = layout
        self.family = family
        self.info = info
        self._log_joint = LogJoint(model, layout)

    def __repr__(self) -> str:
        return (
            f"Posterior(family={self.info.family!r}, parameters={self.layout.names}, "
            f"n_data={self.info.n_data}, converged={self.info.converged})"
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.family.mean().dtype

    def sample_unconstrained(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` draws of the flat unconstrained vector, ``(n, P)``."""
        return self.family.rsample(n, generator=make_generator(seed, generator)).detach()

    def sample(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``n`` posterior draws per parameter: ``{name: (n, *shape)}``."""
        return self.layout.values(self.sample_unconstrained(n, seed=seed, generator=generator))

    @cached_property
    def _summary_draws(self) -> dict[str, torch.Tensor]:
        return self.sample(_SUMMARY_DRAWS, seed=0)

    def _moments(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Exact moments for unconstrained parameters; Monte Carlo (10,000 draws) otherwise."""
        loc, variance = self.family.mean(), self.family.variance()
        means, sds = {}, {}
        for block in self.layout.blocks:
            if self.layout.is_identity(block.name):
                means[block.name] = loc[block.start : block.stop].reshape(block.spec.shape)
                sds[block.name] = (
                    variance[block.start : block.stop].sqrt().reshape(block.spec.shape)
                )
            else:
                draws = self._summary_draws[block.name]
                means[block.name], sds[block.name] = draws.mean(0), draws.std(0)
        return means, sds

    @cached_property
    def mean(self) -> dict[str, torch.Tensor]:
        """Posterior means, ``{name: tensor of the parameter's shape}``."""
        return self._moments()[0]

    @cached_property
    def sd(self) -> dict[str, torch.Tensor]:
        """Posterior standard deviations, ``{name: tensor of the parameter's shape}``."""
        return self._moments()[1]

    def summary(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """One row per scalar parameter: ``mean``, ``sd`` and the highest-density interval."""
        lows, highs = [], []
        for name in self.layout.names:
            low, high = hdi(self._summary_draws[name], hdi_prob)
            lows.append(low.reshape(-1))
            highs.append(high.reshape(-1))
        tail = (1 - hdi_prob) / 2 * 100
        table = pd.DataFrame(
            {
                "mean": torch.cat([self.mean[n].reshape(-1) for n in self.layout.names]).tolist(),
                "sd": torch.cat([self.sd[n].reshape(-1) for n in self.layout.names]).tolist(),
                f"hdi_{tail:g}%": torch.cat(lows).tolist(),
                f"hdi_{100 - tail:g}%": torch.cat(highs).tolist(),
            },
            index=self.layout.labels(),
        )
        return table

    def predict(
        self,
        x: Any,
        *,
        n_samples: int = 1000,
        level: float = 0.94,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Prediction:
        """The posterior predictive of ``y`` at new inputs ``x`` (a tensor or tuple, rows first).

        Uses ``n_samples`` parameter draws, each with one simulated observation, in one
        batched pass; means and variances are exact given the draws, intervals are
        empirical quantiles.
        """
        gen = make_generator(seed, generator)
        xs = as_inputs(x, dtype=self.dtype)
        theta = self.sample_unconstrained(n_samples, generator=gen)

        def moments_and_draw(u: torch.Tensor):
            dist = self._log_joint.likelihood(self.layout.values(u), xs)
            return dist.mean, dist.variance, dist.sample()

        with no_validation(), seeded_from(gen):
            means, variances, draws = vmap(moments_and_draw, randomness="different")(theta)
        epistemic = means.var(0, unbiased=False)
        aleatoric = variances.mean(0)
        lower, upper = equal_tailed(draws, level)
        mean_lower, mean_upper = equal_tailed(means, level)
        return Prediction(
            mean=means.mean(0),
            sd=(epistemic + aleatoric).sqrt(),
            epistemic_sd=epistemic.sqrt(),
            aleatoric_sd=aleatoric.sqrt(),
            lower=lower,
            upper=upper,
            mean_lower=mean_lower,
            mean_upper=mean_upper,
            level=level,
        )
