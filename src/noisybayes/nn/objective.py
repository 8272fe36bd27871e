"""The objective for a user's own training loop: the per-datum negative ELBO.

    loss = -(1/B) sum_{i in batch} E_q[log p(y_i | x_i, w)] + temperature * KL(q || p) / N

Averaged over the minibatches of one epoch it equals the full-data ``-ELBO / N`` (for
``temperature = 1``), so each step is an unbiased estimate and learning rates do not
depend on the data size. ``temperature = 1`` is the Bayesian posterior; other values
are tempered posteriors (the default here is 1; ``BNNRegressor``'s is 0.5, chosen on
validation rows).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from noisybayes._checks import check_finite, check_positive_int, is_integer, is_number
from noisybayes._rng import seeded_from
from noisybayes.nn.base import NoisyModule
from noisybayes.nn.conv import BayesConv2d
from noisybayes.nn.convert import noise_parametrizations
from noisybayes.nn.graph_gradients import fused_nodes_allowed
from noisybayes.nn.likelihoods import (
    Bernoulli,
    Categorical,
    Gaussian,
    Likelihood,
    NoiseCollapseWarning,
)
from noisybayes.nn.linear import BayesLinear
from noisybayes.nn.mixture import Mixture
from noisybayes.nn.priors import normal_kl_of_layers

__all__ = [
    "check_rows",
    "check_temperature",
    "elbo_loss",
    "kl_divergence",
    "negative_elbo",
    "resolve_likelihood",
    "sample_outputs",
]

LikelihoodArg = Likelihood | str | nn.Module | Callable[..., torch.Tensor]
_NAMED = ("categorical", "bernoulli")


def _refuse_mixture(model: nn.Module) -> None:
    if isinstance(model, Mixture):
        raise ValueError("model must not be a Mixture: a mixture's KL has no closed form; "
                         "nb.nn.train fits each component to its own ELBO")


def kl_divergence(model: nn.Module, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``KL(q || p)`` summed over every noisy parameter of ``model``, a scalar tensor."""
    _refuse_mixture(model)
    noisy = [m for m in model.modules()
             if isinstance(m, NoisyModule) and type(m).kl is not NoisyModule.kl]
    terms: list[torch.Tensor] = []
    if fused_nodes_allowed():  # layers sharing a Normal prior: one
        terms, noisy = normal_kl_of_layers(noisy)       # pass over all their tensors
    terms += [m.kl(generator=generator) for m in noisy]
    terms += [noise.kl_of(loc, generator=generator) for noise, loc in noise_parametrizations(model)]
    if not terms:
        raise ValueError("model must have Bayesian parameters (see nb.bayesian), got none in "
                         f"{type(model).__name__}")
    return terms[0].sum() if len(terms) == 1 else torch.stack(terms).sum()  # one: no stack


def resolve_likelihood(likelihood: LikelihoodArg) -> Likelihood:
    """A :class:`Likelihood` from the ``likelihood`` argument; squared error warns.

    ``"mse"``, an ``nn.MSELoss`` or ``F.mse_loss`` is the Gaussian likelihood with the noise
    scale fixed at 1 in the target's units, and a stochastic network trained on squared
    error alone sends its injected noise to zero: a :class:`NoiseCollapseWarning` says so.
    """
    if isinstance(likelihood, Likelihood):
        return likelihood
    if isinstance(likelihood, nn.MSELoss) or likelihood is F.mse_loss or likelihood == "mse":
        warnings.warn(
            "likelihood is squared error: the noise scale is then fixed at 1 and, without "
            "the KL term, E[(y - f)^2] = (y - E f)^2 + Var f drives every injected scale to "
            "zero. Use nb.nn.Gaussian() to learn the noise scale.",
            NoiseCollapseWarning,
            stacklevel=3,
        )
        return Gaussian(1.0, learn_scale=False)
    if likelihood == "categorical":
        return Categorical()
    if likelihood == "bernoulli":
        return Bernoulli()
    if isinstance(likelihood, str):
        hint = (" (a learned noise scale is a parameter: create nb.nn.Gaussian() once and give "
                "its parameters to the optimizer)" if likelihood in ("gaussian", "normal") else "")
        raise ValueError(f"likelihood must be a nb.nn.Likelihood or one of "
                         f"{', '.join(map(repr, _NAMED))}, got {likelihood!r}{hint}")
    raise TypeError(f"likelihood must be a nb.nn.Likelihood or a string, got {likelihood!r}")


def _check_finite(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    check_finite(name, value)
    if value.ndim == 0:
        raise ValueError(f"{name} must have a leading batch dimension, got a scalar")
    return value


def _n_data(n_data: Any, batch: int) -> int:
    if isinstance(n_data, torch.utils.data.DataLoader):
        n_data = len(n_data.dataset)  # type: ignore[arg-type]
    if not is_integer(n_data) or n_data < 1:
        raise ValueError(f"n_data must be an integer >= 1 or a DataLoader, got {n_data!r}")
    if n_data < batch:
        raise ValueError(f"n_data must be >= the batch size {batch} (the training set size), "
                         f"got {n_data}")
    return int(n_data)


def has_shared_noise(model: nn.Module) -> bool:
    """Whether one forward pass shares weight noise across rows (generic noise, Flipout)."""
    return bool(noise_parametrizations(model)) or any(
        isinstance(m, BayesConv2d) or (isinstance(m, BayesLinear) and m.flipout)
        for m in model.modules()
    )


def sample_outputs(model: nn.Module, x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """``n_samples`` posterior draws of ``model(x)``, ``(n_samples, B, ...)``.

    One batched pass over ``x`` repeated ``n_samples`` times when every noisy layer draws
    independent noise per row (local reparameterization); one pass per draw otherwise. A
    :class:`Mixture` gives each component ``n_samples // K`` of the draws (stratified) and
    the remaining draws each row's own random component.
    """
    if isinstance(model, Mixture) and n_samples >= len(model):
        share, rest = divmod(n_samples, len(model))
        parts = [sample_outputs(c, x, share) for c in model.components]
        if rest:
            parts.append(sample_outputs(model, x, rest))
        return torch.cat(parts)
    if n_samples == 1:
        return model(x).unsqueeze(0)
    if has_shared_noise(model):
        return torch.stack([model(x) for _ in range(n_samples)])
    out = model(x.repeat(n_samples, *([1] * (x.ndim - 1))))
    return out.reshape(n_samples, x.shape[0], *out.shape[1:])


def elbo_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    likelihood: LikelihoodArg,
    n_data: int | torch.utils.data.DataLoader,
    n_samples: int = 1,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The per-datum negative ELBO of one minibatch, a scalar to ``.backward()``.

    Args:
        model: a network with Bayesian parameters (``nb.bayesian`` or ``nb.nn`` layers).
        x: the batch inputs, ``(B, ...)``, passed to ``model`` as is.
        y: the batch targets, ``(B, ...)``, matching the likelihood's view of the output.
        likelihood: a ``nb.nn`` likelihood (``Gaussian()``, ``HeteroscedasticGaussian()``,
            ``StudentT()``, ``HeteroscedasticStudentT()``, ``Categorical()``,
            ``Bernoulli()``) or ``"categorical"`` /
            ``"bernoulli"``.
        n_data: the training set size ``N``, or the ``DataLoader`` that yields the batches.
        n_samples: Monte Carlo draws of the weights per row.
        temperature: the KL weight; 1 is the posterior.
        generator: the randomness of the weight noise and of a Monte Carlo KL (non-Gaussian
            priors); ``None`` draws from torch's global generator.
    """
    _refuse_mixture(model)
    lik = resolve_likelihood(likelihood)
    x, y = check_rows(x, y)
    n = _n_data(n_data, x.shape[0])
    check_positive_int("n_samples", n_samples)
    check_temperature(temperature)
    with nullcontext() if generator is None else seeded_from(generator):
        return negative_elbo(model, x, y, lik, n, n_samples, temperature)


def check_rows(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` if they are finite tensors with the same leading (row) dimension."""
    x = _check_finite("x", x)
    y = _check_finite("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"y must have as many rows as x ({x.shape[0]}), got {y.shape[0]}")
    return check_has_rows(x), y


def check_has_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` if it has at least one row."""
    if x.shape[0] == 0:
        raise ValueError("x must have at least one row, got 0")
    return x


def first_parameter(model: nn.Module) -> torch.Tensor:
    """The tensor whose dtype and device the network trains in."""
    return next(model.parameters(), torch.empty(0))


def in_dtype(tensor: Any, dtype: torch.dtype) -> Any:
    """``tensor`` in the network's float ``dtype`` if it is a float tensor; anything else
    (integer class labels, or a non-tensor for the checks to name) as it is."""
    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
        return tensor.to(dtype)
    return tensor


def note_rows(error: Exception, x: torch.Tensor, where: str) -> None:
    """Add to ``error`` (raised ``where``, e.g. in the model's forward pass) the shape and
    dtype of the rows ``x`` it was given: torch's own message (a shape or dtype mismatch)
    rarely says which rows; the error keeps its type and message."""
    error.add_note(f"noisybayes: raised {where} on rows x of shape {tuple(x.shape)} and dtype "
                   f"{x.dtype}")


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a float if it is a finite number ``>= 0`` (the KL's weight)."""
    if not (is_number(temperature) and 0 <= temperature < math.inf):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return float(temperature)


def negative_elbo(model: nn.Module, x: torch.Tensor, y: torch.Tensor, likelihood: Likelihood,
                  n_data: int, n_samples: int, temperature: float) -> torch.Tensor:
    """:func:`elbo_loss` on arguments already checked (the training loop checks its rows and
    settings once, not every batch)."""
    if n_samples == 1:  # one draw: no repeat-and-reshape (a few percent of a small step)
        outputs, targets = model(x), y
    else:
        draws = sample_outputs(model, x, n_samples)
        outputs = draws.reshape(-1, *draws.shape[2:])
        targets = y.expand(n_samples, *y.shape).reshape(n_samples * y.shape[0], *y.shape[1:])
    nll = -likelihood.log_prob(outputs, targets).mean()
    if temperature == 0:
        return nll
    return nll + temperature * kl_divergence(model) / n_data
