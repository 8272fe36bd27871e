"""``VariationalDropoutLinear``: dropout whose rate is learned, one rate per weight.

Each weight has the posterior ``N(theta, alpha theta^2)`` under the log-uniform prior
(:class:`~noisybayes.nn.priors.LogUniform`). With one ``alpha`` per layer this is the
Bayesian reading of Gaussian dropout (Kingma, Salimans & Welling 2015); with one ``alpha``
per weight, weights with large ``alpha`` carry no signal and can be removed (Molchanov,
Ashukha & Vetrov 2017). The mean ``theta = loc`` and the sd ``scale = sqrt(alpha) |theta|``
are separate free parameters (their "additive reparameterization", which keeps the gradient
of ``theta`` free of the noise), so ``alpha = scale^2 / loc^2`` is derived, not stored.
Sampling is by local reparameterization, as in :class:`~noisybayes.nn.BayesLinear`.
"""

from __future__ import annotations

import math

import torch

from noisybayes._checks import is_number
from noisybayes.math.log_uniform import log_alpha
from noisybayes.nn.linear import BayesLinear
from noisybayes.nn.priors import LogUniform

__all__ = ["VariationalDropoutLinear"]


class VariationalDropoutLinear(BayesLinear):
    """A linear layer with sparse variational dropout: ``W_ij ~ N(theta_ij, alpha_ij theta_ij^2)``.

    The same layer as ``BayesLinear(..., prior=nb.nn.LogUniform(), bayesian_bias=False)``:
    ``forward`` draws each row's pre-activations, ``kl()`` is the log-uniform KL
    approximation summed over the weights, and it trains with :func:`nb.elbo_loss` /
    :func:`nb.nn.train` into an :class:`~noisybayes.nn.NetworkPosterior`. ``nb.bayesian(model,
    prior=nb.nn.LogUniform())`` gives the same layers inside an existing model.

    Args:
        in_features, out_features, bias, init_scale, device, dtype: as in
            :class:`~noisybayes.nn.BayesLinear`.
        bayesian_bias: ``False`` (default) keeps the bias deterministic.

    Shapes: ``(*, in_features)`` to ``(*, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init_scale: float = 0.1,
        bayesian_bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, prior=LogUniform(),
                         init_scale=init_scale, bayesian_bias=bayesian_bias, device=device,
                         dtype=dtype)

    @property
    def log_alpha(self) -> torch.Tensor:
        """``log alpha = log(scale^2 / loc^2)`` of each weight, shaped like ``weight_loc``."""
        return log_alpha(self.weight_loc, self.weight_scale)

    def sparsity(self, threshold: float = 3.0) -> float:
        """The fraction of weights with ``log alpha > threshold``, those that can be set to
        zero (``threshold = 3``: noise sd over 4.5 times the mean, Molchanov et al. 2017)."""
        if not (is_number(threshold) and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        with torch.no_grad():
            return float((self.log_alpha > threshold).double().mean())
