"""Training a Bayesian network: Adam on :func:`elbo_loss` through the library's one loop.

Data stay tensors sliced by index (no per-row collation), or come in minibatches from a data
source (``nb.data.Parquet``, ``nb.data.CSV``: files read in bounded memory). The step size
decays linearly to a tenth of ``learning_rate`` over the run, which settles the noisy scale
gradients. A :class:`~noisybayes.nn.mixture.Mixture` trains all its components at once: their
parameters are stacked and ``torch.func.vmap`` evaluates every component's ELBO in one pass
(when every noisy module is a layer with a scalar Normal prior, the KL outside it, from the
stacked tensors in one node per prior; the components must share their priors).
Under ``torch.distributed`` each process passes its own rows: the weights start from process
0's, each step's loss and gradient are summed over the processes (the KL counted once,
``engine/distributed.py``), and every process ends with the same network.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Normal
from torch.func import functional_call, stack_module_state, vmap

from noisybayes._checks import check_positive_int, is_number
from noisybayes._progress import show_progress
from noisybayes._rng import make_generator
from noisybayes.engine import (
    DataSource,
    LinearDecay,
    OptimizerFactory,
    TensorSource,
    Trainer,
    adam,
)
from noisybayes.engine.checkpoint import run_checkpointed
from noisybayes.engine.distributed import World
from noisybayes.engine.source import check_whole
from noisybayes.infer.objective import batched_evaluation
from noisybayes.infer.posterior import FitInfo
from noisybayes.nn.base import NoisyModule
from noisybayes.nn.convert import noise_parametrizations
from noisybayes.nn.likelihoods import Likelihood
from noisybayes.nn.mixture import Mixture
from noisybayes.nn.objective import (
    check_rows,
    check_temperature,
    first_parameter,
    in_dtype,
    negative_elbo,
    note_rows,
)
from noisybayes.nn.posterior import NetworkPosterior
from noisybayes.nn.priors import LogUniform, ScaleMixturePrior, SoftplusNormalKL

__all__ = ["train"]


def train(
    model: nn.Module,
    x: torch.Tensor | DataSource,
    y: torch.Tensor | None = None,
    *,
    likelihood: Likelihood,
    n_epochs: int,
    batch_size: int = 32,
    learning_rate: float = 1e-2,
    n_samples: int = 1,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    optimizer: OptimizerFactory = adam,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
) -> NetworkPosterior:
    """Minimise the per-datum ``-ELBO`` of ``model`` (and ``likelihood``'s noise scale).

    Args:
        model, likelihood: a Bayesian network (or a :class:`Mixture` of them, whose
            components share the likelihood) and its likelihood; both are trained in place.
        x, y: all training rows, ``(N, ...)`` each (under ``torch.distributed``, this
            process's rows; ``N`` their sum over processes); or ``x`` a data source of one input
            (e.g. ``nb.data.Parquet(path, x=[...], y=...)``) and ``y`` ``None``: minibatches
            are read from it (memory: its buffer), cast to the network's dtype and device,
            and the posterior keeps no data (``to_arviz`` then needs ``x`` and ``y``); under
            ``torch.distributed`` every process passes the whole source and reads its shard.
        n_epochs: passes over the data; ``batch_size`` rows per step.
        learning_rate: Adam's initial step, decayed linearly to a tenth.
        n_samples, temperature: as in :func:`elbo_loss`.
        generator: the randomness of the batches and of the weight noise.
        progress: a progress bar over steps with the loss of the last window (shown after a
            second); ``None``: only when stderr is a terminal (on process 0 alone under
            ``torch.distributed``).
        optimizer: makes the optimiser from the parameters and the first step size (Adam;
            see :func:`noisybayes.nn.train_ivon` for IVON).
        checkpoint, checkpoint_every: a file to write the whole training state to every
            ``checkpoint_every`` steps; when it exists, training resumes from it, and a run
            restarted with the same arguments ends as the uninterrupted run would
            (``noisybayes.engine.checkpoint``; under ``torch.distributed`` process 0 writes
            every process's state, and each resumes from its own).

    Returns:
        The trained network's :class:`~noisybayes.nn.NetworkPosterior` (``info.loss_trace``:
        the per-datum ``-ELBO`` of every step; for a mixture, the mean over its components).

    Raises:
        DivergenceError: the loss became NaN or infinite (names the epoch and step).
    """
    if not isinstance(likelihood, Likelihood):
        raise TypeError(
            "likelihood must be a nb.nn.Likelihood object, trained with the network (e.g. "
            f"nb.nn.Gaussian()), got {likelihood!r}"
        )
    n_epochs = check_positive_int("n_epochs", n_epochs)
    n_samples = check_positive_int("n_samples", n_samples)
    temperature = check_temperature(temperature)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    batch_size = check_positive_int("batch_size", batch_size)
    if not (is_number(learning_rate) and 0 < learning_rate < math.inf):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    learning_rate = float(learning_rate)
    world = World.current()
    with world.together():
        source, checked = _source(x, y, world, first_parameter(model).dtype)
    n = source.n_data
    batch_size = min(batch_size, source.n_rows)
    per_epoch = world.largest(math.ceil(source.n_rows / batch_size))  # same steps everywhere
    total = n_epochs * per_epoch
    world.broadcast([*model.parameters(), *model.buffers(), *likelihood.parameters()])
    model.train()  # before the objective: a mixture's template copies the mode
    as_data_size, weight = world.shard_scale(source.n_rows, n)
    objective = NetworkObjective(model, likelihood, as_data_size, n_samples, temperature,
                                 weight, check_batches=not checked)
    schedule = LinearDecay(float(learning_rate), total, per_epoch)
    trainer = Trainer(objective, source, schedule, batch_size=batch_size,
                      generator=world.same_generator(make_generator(None, generator)),
                      max_steps=total, drop_last=False,
                      progress=show_progress(progress) and world.rank == 0,
                      fingerprint=_names(model), optimizer=optimizer, world=world)
    start = time.perf_counter()
    try:
        if checkpoint is None:
            result = trainer.run()
        else:
            result = run_checkpointed(trainer, checkpoint, checkpoint_every, world)
    finally:  # a mixture's components get the last parameters also when training stops early
        objective.finish()
    assert result is not None  # a run without `until` always finishes
    info = FitInfo(
        family="meanfield" if not isinstance(model, Mixture) else f"mixture of {len(model)}",
        n_steps=result.n_steps, converged=False,
        reason=f"ran the requested {n_epochs} epochs (no convergence test)",
        loss_trace=result.loss_trace, n_data=n, batch_size=batch_size, n_samples=n_samples,
        seconds=time.perf_counter() - start, n_epochs=result.n_epochs,
        temperature=float(temperature),
    )
    data = None
    if isinstance(source, TensorSource) and not world.parallel:  # all rows are here
        data = (source.inputs[0], source.y)
    return NetworkPosterior(model, likelihood, info, data)


def _source(x: torch.Tensor | DataSource, y: torch.Tensor | None, world: World,
            dtype: torch.dtype) -> tuple[DataSource, bool]:
    """The training rows as an engine source, and whether its rows are already checked:
    tensors ``x`` and ``y`` (this process's rows of ``world``'s), their floats in the
    network's ``dtype``, checked here once; or ``x`` itself, a data source whose batches are
    checked as they are read."""
    if not isinstance(x, DataSource):
        if y is None:
            raise ValueError("y must be given when x is a tensor, got None")
        x, y = check_rows(*(in_dtype(t, dtype) for t in (x, y)))
        world.check_own_rows("x and y", x, y)
        return TensorSource((x,), y, world.total(y.shape[0])), True
    if y is not None:
        raise ValueError(f"y must be None when x is a data source (it yields y), got {y!r}")
    whole = check_whole("x", x)
    return (whole.shard(world.rank, world.size) if world.parallel else whole), False


def _names(model: nn.Module) -> str:
    return ",".join(name for name, _ in model.named_parameters())


class _Element(nn.Module):
    """One component's per-datum ``-ELBO`` as a module, for ``functional_call``."""

    def __init__(self, network: nn.Module, likelihood: Likelihood, n: int, n_samples: int,
                 temperature: float) -> None:
        super().__init__()
        self.network, self.likelihood = network, likelihood
        self.n, self.n_samples, self.temperature = n, n_samples, temperature

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return negative_elbo(self.network, x, y, self.likelihood, self.n, self.n_samples,
                             self.temperature)


def _stacked_normal_kl(mixture: Mixture,
                       stacked: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor] | None:
    """``sum_k KL(q_k || p)`` over a mixture's components from their ``stacked`` parameters
    (``(K, ...)`` each), as one fused node per prior outside ``vmap``, when every noisy
    module is a layer with the closed-form Normal KL (``fusable_kl``) and scalar prior values
    shared by the components: the KL is a sum over elements, so the stacked tensors give all
    K at once. ``None`` otherwise (the KL is then taken per component inside ``vmap``)."""
    if noise_parametrizations(mixture):
        return None
    groups: dict[tuple, list[torch.Tensor]] = {}  # per prior, dtype and device
    for name, module in mixture.components[0].named_modules():
        if not isinstance(module, NoisyModule) or type(module).kl is NoisyModule.kl:
            continue
        prior = getattr(module, "prior", None)  # the components' (_check_shared_priors)
        if (not getattr(module, "fusable_kl", False) or type(prior) is not Normal
                or prior.loc.ndim or prior.scale.ndim):
            return None
        key = (float(prior.loc), float(prior.scale), module.weight_loc.dtype,
               module.weight_loc.device)
        names = ["weight_loc", "weight_scale_free"]
        if module.bias_loc is not None and module.bias_scale_free is not None:
            names += ["bias_loc", "bias_scale_free"]
        groups.setdefault(key, []).extend(stacked[f"{name}.{t}" if name else t] for t in names)
    if not groups:
        return None

    def kl_sum() -> torch.Tensor:
        terms = [SoftplusNormalKL.apply(pairs[0].new_tensor(loc), pairs[0].new_tensor(scale),
                                        *pairs) for (loc, scale, *_), pairs in groups.items()]
        return terms[0] if len(terms) == 1 else torch.stack(terms).sum()

    return kl_sum


def _same_prior(a: object, b: object) -> bool:
    """Whether two layers' priors are one: the same object, ``Normal`` priors of equal
    ``loc`` and ``scale``, or the library's scale-mixture or log-uniform priors of equal
    settings (any other prior must be shared as one object)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, Normal) and isinstance(b, Normal):
        return all(x.shape == y.shape and bool((x.double() == y.double()).all())
                   for x, y in ((a.loc, b.loc), (a.scale, b.scale)))
    return isinstance(a, (ScaleMixturePrior, LogUniform)) and vars(a) == vars(b)


def _check_shared_priors(mixture: Mixture) -> None:
    """Refuse components whose layers' priors differ (:func:`_same_prior`): the vectorised
    objective evaluates every component with the first one's modules, priors included."""
    first = dict(mixture.components[0].named_modules())
    for k, component in enumerate(mixture.components[1:], start=1):
        for name, module in component.named_modules():
            prior = getattr(module, "prior", None)
            reference = getattr(first.get(name), "prior", None)
            if not _same_prior(prior, reference):
                raise ValueError(
                    f"components must share their layers' priors (one object, or Normal, "
                    f"scale-mixture or log-uniform priors of equal values), got {prior!r} in "
                    f"layer {name!r} of component {k} against component 0's {reference!r}")


class NetworkObjective:
    """The batch loss and the tensors Adam updates: one network's ``-ELBO``, or the mean
    over a mixture's components with their parameters stacked (one ``vmap`` pass)."""

    def __init__(self, model: nn.Module, likelihood: Likelihood, n: int, n_samples: int,
                 temperature: float, weight: float = 1.0, *, check_batches: bool = True) -> None:
        self.model, self.weight, self.check_batches = model, weight, check_batches
        first = first_parameter(model)
        self.device, self.dtype = first.device, first.dtype
        if not isinstance(model, Mixture):
            element = _Element(model, likelihood, n, n_samples, temperature)
            self.tensors: list[torch.Tensor] = [*model.parameters(), *likelihood.parameters()]
            self._loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = element
            return
        _check_shared_priors(model)
        self.stacked, self.buffers = stack_module_state(list(model.components))
        template = copy.deepcopy(model.components[0]).to("meta")
        kl_sum = _stacked_normal_kl(model, self.stacked) if temperature > 0 else None
        element = _Element(template, likelihood, n, n_samples,
                           0.0 if kl_sum is not None else temperature)
        kl_weight = temperature / (n * len(model))
        shared: dict[str, torch.Tensor] = {
            f"likelihood.{k}": v for k, v in likelihood.named_parameters()
        }

        def component_loss(params: dict, buffers: dict, x: torch.Tensor,
                           y: torch.Tensor) -> torch.Tensor:
            network: dict[str, torch.Tensor] = {
                f"network.{k}": v for k, v in (params | buffers).items()
            }
            return functional_call(element, (network, shared), (x, y))

        losses = vmap(component_loss, in_dims=(0, 0, None, None), randomness="different")

        def mean_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with batched_evaluation():
                loss = losses(self.stacked, self.buffers, x, y).mean()
            return loss if kl_sum is None else loss + kl_weight * kl_sum()

        self._loss = mean_loss
        self.tensors = [*self.stacked.values(), *shared.values()]

    def parameters(self) -> list[torch.Tensor]:
        return self.tensors

    def loss(self, batch: tuple[tuple[torch.Tensor, ...], torch.Tensor]) -> torch.Tensor:
        inputs, y = batch
        if len(inputs) != 1:
            shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
            raise ValueError(f"x must yield one input for the network, got a data source "
                             f"yielding {len(inputs)} inputs of shapes {shapes}")
        x, y = (self._cast(t) for t in (inputs[0], y))
        if self.check_batches:  # rows read from a source; tensors were checked whole
            x, y = check_rows(x, y)
        try:
            loss = self._loss(x, y)
        except RuntimeError as error:  # e.g. integer rows into a Bayesian layer
            note_rows(error, x, "in the loss (the model's forward pass, likelihood and KL)")
            raise
        return loss if self.weight == 1 else self.weight * loss  # one process: no product

    def _cast(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the network's device, in its float dtype if a float (a no-op for
        tensors that already are: the rows of a data source come in their own)."""
        return in_dtype(tensor, self.dtype).to(self.device)

    def finish(self) -> None:
        """Write a mixture's stacked parameters and buffers (e.g. running statistics) back
        into its components."""
        if not isinstance(self.model, Mixture):
            return
        with torch.no_grad():
            for k, component in enumerate(self.model.components):
                for name, param in component.named_parameters():
                    param.copy_(self.stacked[name][k])
                for name, buffer in component.named_buffers():
                    buffer.copy_(self.buffers[name][k])
