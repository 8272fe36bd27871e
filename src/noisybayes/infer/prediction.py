"""``Prediction``: the posterior predictive at new inputs, one type for every route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from noisybayes.math.intervals import equal_tailed

__all__ = ["Prediction"]


@dataclass(frozen=True)
class Prediction:
    """The posterior predictive at new inputs, each field shaped like ``y`` of those rows.

    ``mean`` is ``E[y]``; ``sd`` the total predictive sd, with ``sd^2 = epistemic_sd^2 +
    aleatoric_sd^2`` (parameter uncertainty ``Var_q[E[y|theta]]`` plus noise
    ``E_q[Var[y|theta]]``). ``lower``/``upper`` bound the central predictive interval of
    ``level`` for a new observation; ``mean_lower``/``mean_upper`` the credible interval of
    ``E[y | x, theta]``.

    For a classification likelihood the class fields are set as well (``None`` otherwise):
    ``probs`` is ``p = E_q[p_theta]``, ``(B, K)`` (``(B,)``, the probability of class 1, for
    a Bernoulli likelihood); ``entropy`` ``H[p]`` is the total uncertainty,
    ``mutual_information`` ``I(y; theta) = H[p] - E_q H[p_theta]`` the epistemic part and
    ``expected_entropy`` ``E_q H[p_theta]`` the aleatoric part, each ``(B,)`` in nats. The
    regression fields then describe the label ``y`` itself (Bernoulli: 0/1) or are the
    moments of the class index.
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
    probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    expected_entropy: torch.Tensor | None = None
    mutual_information: torch.Tensor | None = None

    @classmethod
    def from_draws(
        cls, means: torch.Tensor, variances: torch.Tensor, draws: torch.Tensor, level: float
    ) -> Prediction:
        """From per-draw likelihood means and variances ``(S, ...)`` and simulated ``y``
        ``(S', ...)``: ``Var[y] = Var_S[E[y|theta]] + E_S[Var[y|theta]]`` (total variance)."""
        epistemic = means.var(0, unbiased=False)
        aleatoric = variances.mean(0)
        lower, upper = equal_tailed(draws, level)
        mean_lower, mean_upper = equal_tailed(means, level)
        return cls(
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

    def apply(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Prediction:
        """The prediction with ``function`` applied to every tensor field (e.g. moving them
        to the CPU, or reshaping them to ``y``'s shape)."""
        changed: dict[str, Any] = {
            f.name: function(value) for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **changed)

    def affine(self, shift: float, scale: float) -> Prediction:
        """The prediction of ``shift + scale * y`` (``scale > 0``): locations move and scale,
        sds scale. Maps a model of a standardised response back to the user's units."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if self.probs is not None:
            raise ValueError("affine() applies to a regression prediction, got class labels")
        sds = {"sd", "epistemic_sd", "aleatoric_sd"}
        moved: dict[str, Any] = {  # the class fields are None here
            f.name: value * scale + (0.0 if f.name in sds else shift)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)
