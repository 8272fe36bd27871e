"""Training a plain network by :class:`noisybayes.optim.IVON` through the library's one loop.

The network keeps its ordinary layers; the optimizer holds the mean-field Gaussian posterior
of its weights, perturbs them for every step and learns that posterior from the per-datum
negative log-likelihood (the weight decay is the prior). The loop, the data passes, the
step-size schedule and the progress bar are those of :func:`noisybayes.nn.train`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisybayes._checks import check_positive, check_positive_int
from noisybayes._rng import make_generator
from noisybayes.nn.base import NoisyModule
from noisybayes.nn.ivon_posterior import IVONPosterior
from noisybayes.nn.likelihoods import Likelihood
from noisybayes.nn.mixture import Mixture
from noisybayes.nn.objective import check_has_rows
from noisybayes.nn.train import train
from noisybayes.optim import IVON

__all__ = ["ivon_accepts", "ivon_hyperparameters", "train_ivon"]


def ivon_hyperparameters(n_data: float, prior_scale: float,
                         init_scale: float) -> tuple[float, float]:
    """``(weight_decay, hess_init)`` for the prior ``N(0, prior_scale^2)`` and the initial
    posterior sd ``init_scale``: ``delta = 1 / (N prior_scale^2)``, ``h_0 = 1 / (N
    init_scale^2) - delta`` (IVON's sd is ``1 / sqrt(N (h + delta))``, ``N`` its ``ess``)."""
    prior_scale = check_positive("prior_scale", prior_scale)
    init_scale = check_positive("init_scale", init_scale)
    if not init_scale < prior_scale:
        raise ValueError(f"init_scale must be < prior_scale ({prior_scale!r}): the initial "
                         f"posterior is narrower than the prior, got {init_scale!r}")
    weight_decay = 1.0 / (n_data * prior_scale**2)
    return weight_decay, 1.0 / (n_data * init_scale**2) - weight_decay


def ivon_accepts(temperature: Any, prior_scale: Any, init_scale: Any) -> bool:
    """Whether :func:`train_ivon` takes these settings: a temperature ``> 0`` and
    ``init_scale < prior_scale``, all numbers whose hyper-parameters can be computed (the
    checks it runs, answered instead of raised)."""
    try:
        check_positive("temperature", temperature)
        ivon_hyperparameters(1.0, prior_scale, init_scale)
    except (TypeError, ValueError, ArithmeticError):
        return False
    return True


def train_ivon(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    likelihood: Likelihood,
    n_epochs: int,
    batch_size: int = 32,
    learning_rate: float = 0.03,
    prior_scale: float = 1.0,
    init_scale: float = 0.1,
    temperature: float = 1.0,
    n_samples: int = 1,
    beta2: float | None = None,
    clip_radius: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
) -> IVONPosterior:
    """Learn the mean-field posterior of ``model``'s weights under the prior
    ``N(0, prior_scale^2)`` by IVON: ``ess = N / temperature``, ``weight_decay = 1 / (ess
    prior_scale^2)``, ``hess_init`` so that the initial posterior sd is ``init_scale``.

    Args:
        model, likelihood: a deterministic network (e.g. ``nn.Linear`` layers) and its
            likelihood; both are trained in place. The likelihood's parameters (a noise
            scale) are in the optimizer with no weight decay (a flat prior) and their own
            ``hess_init = 1`` (the order of the per-datum information of a noise scale's
            log, 2 for a Gaussian; the network's, from ``init_scale``, shrinks with ``N``).
        x, y: all training rows, ``(N, ...)`` each.
        n_epochs, batch_size, progress, checkpoint, checkpoint_every: as in
            :func:`noisybayes.nn.train` (a checkpoint holds IVON's state with the rest).
        learning_rate: IVON's step size ``alpha`` (``rescale_lr=False``: the mean moves by
            ``alpha (g_bar + delta m) / (h + delta)``, a damped Newton step that does not
            shrink with ``hess_init``), decayed linearly to a tenth; the default was chosen
            on validation rows (``benchmarks/uci_choice.py --settings``).
        temperature: ``T > 0`` tempers the likelihood to the power ``1 / T`` (the KL weight
            of :func:`noisybayes.nn.train`); 1 is the posterior.
        n_samples: weight draws per step.
        beta2: the Hessian's moving-average factor; ``None``: ``1 - 10 / T`` for ``T`` steps
            (at least 0.9), so that ``hess_init`` weighs ``beta2^T ~ e^-10`` at the end.
        clip_radius: the largest preconditioned step ``|g_bar + delta m| / (h + delta)`` of
            an entry, in its own units (a first gradient far from the optimum, e.g. of a
            noise scale that starts too small, would otherwise throw it far).
        generator: the randomness of the batches and of the weight noise.

    Returns:
        An :class:`IVONPosterior` (``info.loss_trace``: the per-datum negative
        log-likelihood of every step, at the drawn weights; the prior acts through the
        weight decay and is not in the trace, so ``info.final_elbo`` lacks the KL term).
    """
    if isinstance(model, Mixture):
        raise ValueError("model must not be a Mixture: one IVON optimizer holds one "
                         "Gaussian posterior; train each component by itself")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor (train_ivon reads its rows in memory), got "
                        f"{type(x).__name__}")
    if any(isinstance(m, NoisyModule) for m in model.modules()):
        raise ValueError("model must be a plain network (IVON holds the posterior of its "
                         "weights), got one with Bayesian layers: train those with "
                         "nb.nn.train, or pass the network before nb.bayesian")
    check_has_rows(x)  # before the hyper-parameters divide by the row count
    n_data = x.shape[0] / check_positive("temperature", temperature)
    weight_decay, hess_init = ivon_hyperparameters(n_data, prior_scale, init_scale)
    n_samples = check_positive_int("n_samples", n_samples)
    gen = make_generator(None, generator)
    if beta2 is None:
        steps = check_positive_int("n_epochs", n_epochs) * math.ceil(
            x.shape[0] / min(check_positive_int("batch_size", batch_size), x.shape[0]))
        beta2 = max(0.9, 1.0 - 10.0 / steps)
    network = {id(p) for p in model.parameters()}
    made: list[IVON] = []

    def make_optimizer(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": [p for p in params if id(p) in network]}]
        rest = [p for p in params if id(p) not in network]
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0, "hess_init": 1.0})
        made.append(IVON(groups, lr=lr, ess=n_data, hess_init=hess_init, beta2=beta2,
                         clip_radius=clip_radius, weight_decay=weight_decay, mc_samples=n_samples, generator=gen,
                         rescale_lr=False))
        return made[-1]

    post = train(model, x, y, likelihood=likelihood, n_epochs=n_epochs, batch_size=batch_size,
                 learning_rate=learning_rate, temperature=0.0, generator=gen,
                 progress=progress, optimizer=make_optimizer, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every)
    info = dataclasses.replace(post.info, family="ivon", solver="ivon", n_samples=n_samples,
                               temperature=float(temperature))
    return IVONPosterior(model, likelihood, made[-1], info=info, data=post.data)
