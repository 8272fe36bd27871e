"""The posterior predictive of a Bayesian network by Monte Carlo over its weights.

For regression, with ``f_s`` the output under weight draw ``s`` and ``p(y | f_s)`` the
likelihood (law of total variance):

    E[y] = mean_s E[y | f_s],   Var[y] = Var_s E[y | f_s] + mean_s Var[y | f_s]
                                         (epistemic)        (aleatoric)

For classification, with ``p_s`` the class probabilities of draw ``s`` and ``H`` entropy:

    p = mean_s p_s,   H[p] = I(y; w) + mean_s H[p_s]   (total = epistemic + aleatoric)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace

import torch
from torch import nn

from noisybayes._checks import is_integer
from noisybayes._rng import seeded_from
from noisybayes.infer.prediction import Prediction
from noisybayes.nn.likelihoods import Bernoulli, Likelihood
from noisybayes.nn.objective import (
    LikelihoodArg,
    _check_finite,
    first_parameter,
    in_dtype,
    note_rows,
    resolve_likelihood,
    sample_outputs,
)

__all__ = ["predict", "predict_classes", "predict_regression", "predict_with"]

_INTERVAL_DRAWS = 2000


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """``H[p] = -sum_k p_k log p_k`` over the last dim (``0 log 0 = 0``)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def predict_classes(outputs: torch.Tensor, lik: Likelihood, level: float) -> Prediction:
    """Class predictive from outputs ``(S, B, K)`` (logits) or ``(S, B)`` / ``(S, B, 1)``.

    The class fields hold ``p = mean_s p_s`` and its entropy split; the moment fields
    describe the label (Bernoulli, ``(B,)``) or its one-hot vector (``(B, K)``): per draw
    mean ``p_s`` and variance ``p_s (1 - p_s)``, intervals from simulated labels.
    """
    if isinstance(lik, Bernoulli):
        p1 = torch.sigmoid(outputs.reshape(outputs.shape[0], outputs.shape[1]))
        per_draw = torch.stack([1 - p1, p1], -1)
    else:
        per_draw = torch.softmax(outputs, -1)
    probs = per_draw.mean(0)
    entropy = _entropy(probs)
    expected = _entropy(per_draw).mean(0)
    label_means = p1 if isinstance(lik, Bernoulli) else per_draw
    labels = torch.bernoulli(label_means)
    moments = Prediction.from_draws(label_means, label_means * (1 - label_means), labels, level)
    return replace(
        moments,
        probs=probs[..., 1] if isinstance(lik, Bernoulli) else probs,
        entropy=entropy,
        expected_entropy=expected,
        mutual_information=(entropy - expected).clamp_min(0.0),
    )


def _aligned(outputs: torch.Tensor, lik: Likelihood, target_shape: tuple[int, ...]) -> torch.Tensor:
    """``outputs`` ``(S, B, ...)`` as the likelihood aligns them with targets ``(B,
    *target_shape)`` in training (e.g. ``(S, B, 1)`` for a ``(B,)`` target becomes ``(S, B)``)."""
    flat = outputs.reshape(-1, *outputs.shape[2:])
    target = flat.new_zeros(flat.shape[0], *target_shape)
    try:
        aligned, _ = lik.align(flat, target)
    except ValueError:
        raise ValueError(
            f"target_shape must fit the model output as the likelihood's targets do, got "
            f"target_shape={tuple(target_shape)} for outputs of shape "
            f"{tuple(outputs.shape[1:])}"
        ) from None
    return aligned.reshape(*outputs.shape[:2], *aligned.shape[1:])


def predict_regression(
    outputs: torch.Tensor,
    lik: Likelihood,
    level: float,
    target_shape: tuple[int, ...] | None = None,
) -> Prediction:
    """Regression predictive from outputs ``(S, B, ...)``.

    Fields are shaped like the targets, ``(B, *target_shape)``, when ``target_shape`` is
    given; otherwise like one draw of the likelihood's mean (the model output without the
    sample dim, less the scale column of a heteroscedastic head).
    """
    if target_shape is not None:
        outputs = _aligned(outputs, lik, tuple(target_shape))
    dist = lik.distribution(outputs)
    means, variances = dist.mean, dist.variance
    per_draw = max(1, math.ceil(_INTERVAL_DRAWS / outputs.shape[0]))
    draws = dist.sample((per_draw,)).reshape(-1, *means.shape[1:])
    return Prediction.from_draws(means, variances, draws, level)


OutputSampler = Callable[[torch.Tensor, int, torch.Generator | None], torch.Tensor]


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    likelihood: LikelihoodArg,
    n_samples: int = 100,
    level: float = 0.9,
    generator: torch.Generator | None = None,
    target_shape: tuple[int, ...] | None = None,
) -> Prediction:
    """The posterior predictive at inputs ``x`` ``(B, ...)`` from ``n_samples`` weight draws.

    Returns a :class:`noisybayes.Prediction`: predictive mean, total, epistemic and
    aleatoric sds, the central ``level`` interval for a new observation and for
    ``E[y | x, w]``, and for a classification likelihood also the class probabilities,
    entropy and mutual information (see :func:`predict_classes`). The model is put in eval
    mode for the call and restored after; its weights are still drawn (eval mode does not
    switch the noise off: :func:`noisybayes.nn.posterior_mean` does).

    ``target_shape`` is the shape of one target, ``y.shape[1:]``: ``()`` for a ``(N,)``
    target makes the regression fields ``(B,)`` even when the network ends in one output
    column, as the likelihood pairs them in training; ``None`` keeps the output's shape.
    """
    return predict_with(lambda x_, n, _: sample_outputs(model, x_, n), model, x,
                        likelihood=likelihood, n_samples=n_samples, level=level,
                        generator=generator, target_shape=target_shape)


@torch.no_grad()
def predict_with(
    sampler: OutputSampler,
    model: nn.Module,
    x: torch.Tensor,
    *,
    likelihood: LikelihoodArg,
    n_samples: int,
    level: float,
    generator: torch.Generator | None,
    target_shape: tuple[int, ...] | None = None,
) -> Prediction:
    """:func:`predict` with the weight draws made by ``sampler(x, n_samples, generator)``,
    which returns the outputs ``(n_samples, B, ...)`` of ``model`` (in eval mode)."""
    lik = resolve_likelihood(likelihood)
    x = _check_finite("x", x)
    x = in_dtype(x, first_parameter(model).dtype)  # float64 rows into a float32 network
    if not is_integer(n_samples) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    was_training = model.training
    model.eval()
    try:
        with seeded_from(generator) if generator is not None else nullcontext():
            try:
                outputs = sampler(x, n_samples, generator)
            except RuntimeError as error:
                note_rows(error, x, "drawing the model's outputs")
                raise
            if lik.task == "classification":
                return predict_classes(outputs, lik, level)
            return predict_regression(outputs, lik, level, target_shape)
    finally:
        model.train(was_training)
