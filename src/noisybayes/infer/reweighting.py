"""PSIS-corrected moments: the posterior's means, sds and intervals from weighted draws of q.

With draws ``theta_s ~ q`` and Pareto-smoothed normalized weights ``w_s ∝ p(theta_s, y) /
q(theta_s)`` (:mod:`noisybayes.math.psis`), ``E_p[f] ≈ sum_s w_s f_s``. The estimate used is
the difference form ``E_p[f] ≈ E_q[f] + sum_s (w_s - 1/S) f_s`` where ``q``'s moments are
exact (unconstrained parameters): consistent in the same limit, it equals ``q``'s moments when
the weights are uniform (an exact ``q`` gains no Monte Carlo noise) and corrects them by what
the weights move. Elsewhere the plain weighted moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisybayes.math.psis import pareto_smoothed_log_weights

__all__ = ["ImportanceDraws"]

_MIN_EFFECTIVE_FRACTION, _MIN_DRAWS = 0.5, 2_000
# Draws kept: at most 1e6 numbers (8 MB in float64) and 40,000 draws.
_KEEP_DRAWS, _KEEP_ELEMENTS = 40_000, 1_000_000


@dataclass(frozen=True)
class ImportanceDraws:
    """Unconstrained draws ``theta`` ``(S, P)`` of ``q`` with normalized PSIS weights
    ``weights`` ``(S,)`` (float64), and the Pareto ``khat`` of the ``n_ratios`` importance
    ratios the smoothing saw (``S <= n_ratios``: a bounded subset is kept)."""

    theta: torch.Tensor
    weights: torch.Tensor
    khat: float
    n_ratios: int

    @staticmethod
    def kept(width: int) -> int:
        """Draws kept for ``width`` parameters: at most 40,000 and 1e6 numbers (none for a
        model too wide to keep :data:`_MIN_DRAWS`, 2,000, of them)."""
        return min(_KEEP_DRAWS, _KEEP_ELEMENTS // max(1, width))

    @classmethod
    def from_ratios(cls, theta: torch.Tensor, log_ratios: torch.Tensor) -> ImportanceDraws:
        """Smooth all ``log_ratios`` ``(S,)``; ``theta`` holds the first ``S' <= S`` draws,
        whose weights are renormalized."""
        return cls.from_log_weights(theta, *pareto_smoothed_log_weights(log_ratios))

    @classmethod
    def from_log_weights(
        cls, theta: torch.Tensor, log_weights: torch.Tensor, khat: float
    ) -> ImportanceDraws:
        """The first ``S'`` draws ``theta`` with smoothed ``log_weights`` ``(S,)`` of all
        ``S`` (renormalized over the ``S'`` kept) and their ``khat``."""
        head = log_weights[: theta.shape[0]]
        weights = (head - torch.logsumexp(head, 0)).exp().to(theta.device)
        return cls(theta.detach(), weights, khat, log_weights.numel())

    @staticmethod
    def could_correct(n_draws: int, width: int) -> bool:
        """Whether ``n_draws`` draws of ``width`` parameters keep enough of them (2,000) to
        correct ``q``'s moments, whatever their weights (:attr:`corrects` asks more)."""
        return min(n_draws, ImportanceDraws.kept(width)) >= _MIN_DRAWS

    @property
    def effective_draws(self) -> float:
        """Kish's effective sample size of the kept weights, ``1 / sum_s w_s^2`` (0 with
        none kept)."""
        return float(1.0 / self.weights.pow(2).sum()) if self.weights.numel() else 0.0

    @property
    def corrects(self) -> bool:
        """Whether these draws can correct ``q``'s moments: k-hat at most ``min(1 - 1 /
        log10 S, 0.7)`` (the sample-size-dependent threshold of Vehtari et al. 2024, with
        ``S`` the ratios smoothed), at least 2,000 draws kept, and at least half of them
        effective. Fewer draws make the correction Monte Carlo noise (a large data set
        leaves k-hat few draws); uneven weights rest it on a few draws, where PSIS
        estimates are pre-asymptotic (``benchmarks/RESULTS.md``, radon)."""
        n_kept = self.weights.numel()
        threshold = min(1.0 - 1.0 / math.log10(max(self.n_ratios, 11)), 0.7)
        return (self.khat <= threshold and n_kept >= _MIN_DRAWS
                and self.effective_draws >= _MIN_EFFECTIVE_FRACTION * n_kept)

    def mapped(self, A: torch.Tensor, b: torch.Tensor) -> ImportanceDraws:
        """The same draws read through ``theta' = A theta + b`` (weights unchanged: the
        ratio ``p / q`` does not change under a change of coordinates of both)."""
        theta = (self.theta.double() @ A.double().T + b.double()).to(self.theta.dtype)
        return ImportanceDraws(theta, self.weights, self.khat, self.n_ratios)

    def moments(
        self, values: torch.Tensor, q_moments: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrected mean and sd of ``f`` from its values at the draws ``(S, *shape)``.

        Given ``f``'s exact mean and sd under ``q`` (``q_moments``), the difference form:
        ``m = m_q + sum_s d_s g_s``, ``v = v_q + sum_s d_s g_s^2 - (m - m_q)^2`` with ``g_s =
        f_s - m_q`` and ``d_s = w_s - 1/S``. Without them (a Monte Carlo ``m_q`` would add its
        own error), or where rounding makes ``v <= 0``, the weighted moments ``sum_s w_s f_s``
        and ``sum_s w_s (f_s - m)^2``.
        """
        shape = values.shape[1:]
        f = values.reshape(values.shape[0], -1).double()
        if q_moments is None:
            mean = self.weights @ f
            variance = self.weights @ (f - mean).pow(2)
        else:
            centre = q_moments[0].reshape(-1).double()
            g = f - centre
            d = self.weights - 1.0 / self.weights.numel()
            shift = d @ g
            variance = q_moments[1].reshape(-1).double().pow(2) + d @ g.pow(2) - shift.pow(2)
            if not bool((variance > 0).all()):
                variance = torch.where(variance > 0, variance, self.weights @ (g - shift).pow(2))
            mean = centre + shift
        return mean.reshape(shape).to(values.dtype), variance.sqrt().reshape(shape).to(values.dtype)
