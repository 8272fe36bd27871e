"""``NetworkPosterior``: a trained Bayesian network as an ``nb.Posterior``.

Every noisy weight tensor ``W`` has the mean-field posterior ``q(W) = N(loc, scale^2)``
elementwise; a :class:`~noisybayes.nn.Mixture` is the equal-weight mixture of its
components' posteriors. The predictive is Monte Carlo over weight draws (see
:func:`noisybayes.nn.predict`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from noisybayes._checks import check_positive_int
from noisybayes._rng import make_generator, seeded_from
from noisybayes.infer.arviz_export import OBSERVATION_DIM, import_arviz
from noisybayes.infer.posterior import FitInfo, Posterior
from noisybayes.infer.prediction import Prediction
from noisybayes.nn.convert import MeanFieldNoise
from noisybayes.nn.likelihoods import Likelihood
from noisybayes.nn.mixture import Mixture
from noisybayes.nn.objective import sample_outputs
from noisybayes.nn.predict import predict_with
from noisybayes.nn.weights import NoisyWeightLayer

if TYPE_CHECKING:
    from arviz import InferenceData

    from noisybayes.infer.diagnostics import CheckReport

__all__ = ["NetworkPosterior", "gaussian_weights"]


def gaussian_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, loc, scale)`` of every noisy weight tensor of ``model`` (named as in
    ``model.named_parameters()`` without the ``_loc`` / parametrization suffixes)."""
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, NoisyWeightLayer):
            yield f"{dot}weight", module.weight_loc, module.weight_scale
            if module.bias_loc is not None and module.bias_scale is not None:
                yield f"{dot}bias", module.bias_loc, module.bias_scale
        if parametrize.is_parametrized(module):
            for attr, chain in module.parametrizations.items():
                noise = next((p for p in chain if isinstance(p, MeanFieldNoise)), None)
                if noise is not None:
                    yield f"{dot}{attr}", chain.original, noise.scale


class NetworkPosterior(Posterior):
    """The mean-field posterior of a Bayesian network and its likelihood.

    ``network`` (trained in place) and ``likelihood`` define ``p(y | x, W)``; ``data`` is
    the ``(x, y)`` it was trained on (``None`` if unknown), used by :meth:`to_arviz`.
    """

    def __init__(self, network: nn.Module, likelihood: Likelihood, info: FitInfo,
                 data: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.network, self.likelihood, self.info, self.data = network, likelihood, info, data

    def __repr__(self) -> str:
        return (f"NetworkPosterior(network={type(self.network).__name__}, "
                f"likelihood={type(self.likelihood).__name__}, n_data={self.info.n_data})")

    @property
    def dtype(self) -> torch.dtype:
        return next(self.network.parameters()).dtype

    def _components(self) -> list[nn.Module]:
        net = self.network
        return list(net.components) if isinstance(net, Mixture) else [net]

    def sample(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``n`` draws of every noisy weight tensor, ``{name: (n, *shape)}``; a mixture's
        draw ``s`` comes from component ``s mod K`` (names as in one component)."""
        n = check_positive_int("n", n)
        gen = make_generator(seed, generator)
        components = self._components()
        which = torch.arange(n) % len(components)
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            per_component = [list(gaussian_weights(c)) for c in components]
            for j, (name, loc, _) in enumerate(per_component[0]):
                locs = torch.stack([weights[j][1] for weights in per_component]).cpu()
                scales = torch.stack([weights[j][2] for weights in per_component]).cpu()
                eps = torch.randn((n, *loc.shape), generator=gen, dtype=locs.dtype)
                out[name] = locs[which] + scales[which] * eps
        return out

    def summary(self, hdi_prob: float = 0.94, *, corrected: bool = True) -> pd.DataFrame:
        """One row per noisy weight tensor: its ``size``, the mean and sd over its entries of
        the posterior means (``loc_mean``, ``loc_sd``), and the mean, smallest and largest
        posterior sd (``scale_mean``, ``scale_min``, ``scale_max``). A mixture has a row per
        component's tensor. (``hdi_prob`` and ``corrected`` are accepted for the common
        signature; a table of per-tensor statistics has no interval column, and a network's
        posterior keeps no draws to correct it by.)"""
        rows = {}
        with torch.no_grad():
            for name, loc, scale in self._gaussian_weights():
                loc, scale = loc.detach().double().cpu(), scale.detach().double().cpu()
                rows[name] = {
                    "size": loc.numel(),
                    "loc_mean": float(loc.mean()),
                    "loc_sd": float(loc.std(unbiased=False)),
                    "scale_mean": float(scale.mean()),
                    "scale_min": float(scale.min()),
                    "scale_max": float(scale.max()),
                }
        return pd.DataFrame.from_dict(rows, orient="index")

    def predict(
        self,
        x: Any,
        *,
        n_samples: int = 100,
        level: float = 0.94,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Prediction:
        """The posterior predictive at ``x`` from ``n_samples`` weight draws (see
        :func:`noisybayes.nn.predict`): regression moments and intervals, shaped like the
        training targets when the posterior knows them, and for a classification likelihood
        the class probabilities, entropy and mutual information."""
        target_shape = None if self.data is None else tuple(self.data[1].shape[1:])
        return predict_with(self.sample_outputs, self.network, x, likelihood=self.likelihood,
                            n_samples=n_samples, level=level,
                            generator=make_generator(seed, generator), target_shape=target_shape)

    def sample_outputs(self, x: torch.Tensor, n: int,
                       generator: torch.Generator | None) -> torch.Tensor:
        """``n`` draws of the network's output at ``x``, ``(n, B, ...)``: the noisy layers
        draw from the global generator, which the callers seed from ``generator``."""
        return sample_outputs(self.network, x, n)

    def _gaussian_weights(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """``(name, loc, scale)`` of every weight tensor with a posterior."""
        return gaussian_weights(self.network)

    def check(
        self,
        x: Any = None,
        y: Any = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CheckReport:
        """Not computed for networks: raises ``NotImplementedError`` saying why."""
        raise NotImplementedError(
            "check() is not computed for a network: its Pareto k-hat needs log p(W, y) - "
            "log q(W) at draws of every weight, and with thousands of weights the importance "
            "ratios are too heavy-tailed to say anything. Judge a network on held-out data: "
            "nb.calibration(draws, y_test) with draws from post.to_arviz(x_test, y_test) or "
            "an estimator's predictive_draws(X_test, y_test)"
        )

    def to_arviz(
        self,
        x: Any = None,
        y: Any = None,
        *,
        n_draws: int = 1000,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> InferenceData:
        """``InferenceData`` with ``posterior_predictive``, ``log_likelihood`` and
        ``observed_data`` (variable ``y``, one chain of ``n_draws`` independent draws) at the
        training data or at ``x`` and ``y``. The weights are not exported (there are too
        many); ``attrs`` carry the fit's metadata."""
        az = import_arviz()
        n_draws = check_positive_int("n_draws", n_draws)
        if (x is None) != (y is None):
            raise ValueError(f"to_arviz() needs both x and y, got {'x' if x is None else 'y'}=None")
        if x is None:
            if self.data is None:
                raise ValueError("to_arviz() needs x and y: this posterior was built without data")
            x, y = self.data
        x_t = torch.as_tensor(x, dtype=self.dtype)
        y_t = torch.as_tensor(y)
        gen = make_generator(seed, generator)
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad(), seeded_from(gen):
                outputs = self.sample_outputs(x_t, n_draws, gen)
                flat = outputs.reshape(-1, *outputs.shape[2:])
                y_rep = y_t.expand(n_draws, *y_t.shape).reshape(-1, *y_t.shape[1:])
                log_lik = self.likelihood.log_prob(flat, y_rep).reshape(n_draws, -1)
                simulated = self.likelihood.distribution(outputs).sample()
        finally:
            self.network.train(was_training)
        attrs = {"inference_library": "noisybayes", "family": self.info.family,
                 "temperature": self.info.temperature, "elbo": self.info.final_elbo,
                 "n_data": self.info.n_data}
        return az.from_dict(
            posterior_predictive={"y": simulated.double().cpu().numpy().reshape(1, n_draws, -1)},
            log_likelihood={"y": log_lik.double().cpu().numpy()[None]},
            observed_data={"y": y_t.double().cpu().numpy().reshape(-1)},
            dims={"y": [OBSERVATION_DIM]},
            attrs=attrs,
        )
