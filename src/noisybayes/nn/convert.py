"""``bayesian``: make an existing ``nn.Module`` Bayesian, parameter by parameter.

Each selected parameter gets a mean-field Gaussian posterior ``N(loc, scale^2)`` whose
``loc`` starts at the parameter's current value:

* the weight of an ``nn.Linear`` becomes a :class:`BayesLinear` (local reparameterization,
  or Flipout) and that of an ``nn.Conv2d`` with zero padding a :class:`BayesConv2d`;
* any other parameter (embeddings, norms, custom modules, Linear subclasses whose owners
  read ``.weight`` directly) gets weight noise ``theta = loc + scale * eps`` through
  ``torch.nn.utils.parametrize``: one draw per access, shared by the batch.

Unselected parameters stay deterministic. The module structure is kept, so a converted
``nn.Sequential`` is still an ``nn.Sequential``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution
from torch.nn.utils import parametrize

from noisybayes.nn.base import NoisyModule, free_scale, initial_scale, softplus_scale
from noisybayes.nn.conv import BayesConv2d
from noisybayes.nn.linear import BayesLinear
from noisybayes.nn.priors import check_prior, mean_field_kl

__all__ = ["MeanFieldNoise", "bayesian", "noise_parametrizations"]


class MeanFieldNoise(NoisyModule):
    """A parametrization ``loc -> loc + scale * eps``, ``eps ~ N(0, I)`` of ``loc``'s shape.

    The wrapped parameter (``module.parametrizations[name].original``) is ``loc``; the
    scale is ``softplus(scale_free)``, starting at ``init_scale / sqrt(last dim)`` for a
    matrix and ``init_scale`` for a vector or scalar.
    """

    def __init__(self, loc: torch.Tensor, prior: Distribution, init_scale: float) -> None:
        super().__init__()
        fan_in = loc.shape[-1] if loc.ndim >= 2 else 1
        self.scale_free = free_scale(loc.detach(), initial_scale(init_scale, fan_in))
        self.prior = prior

    @property
    def scale(self) -> torch.Tensor:
        """Posterior sd of each entry, shaped like ``loc``."""
        return softplus_scale(self.scale_free)

    def forward(self, loc: torch.Tensor) -> torch.Tensor:
        if self.use_mean:
            return loc
        return loc + self.scale * torch.randn_like(loc)

    def kl_of(self, loc: torch.Tensor, *, generator: torch.Generator | None = None):
        """``KL(N(loc, scale^2) || prior)`` summed over entries."""
        return mean_field_kl(loc, self.scale, self.prior, generator=generator)


def noise_parametrizations(model: nn.Module) -> list[tuple[MeanFieldNoise, torch.Tensor]]:
    """Every :class:`MeanFieldNoise` in ``model`` with the ``loc`` it perturbs."""
    found = []
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        plists: Any = module.parametrizations
        for plist in plists.values():
            for p in plist:
                if isinstance(p, MeanFieldNoise):
                    found.append((p, plist.original))
    return found


def _expand(names: Iterable[str] | None, arg: str, all_names: list[str]) -> set[str] | None:
    """Parameter names matched by ``names`` (exact names or module prefixes)."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    chosen: set[str] = set()
    unknown = []
    for name in names:
        hits = [p for p in all_names if p == name or p.startswith(name + ".")]
        if not hits:
            unknown.append(name)
        chosen.update(hits)
    if unknown:
        shown = ", ".join(all_names[:8]) + (", ..." if len(all_names) > 8 else "")
        raise ValueError(f"{arg} must name parameters or modules of the model, got unknown "
                         f"{unknown}; the parameters are: {shown}")
    return chosen


def _owner(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted) if dotted else model


def _variational_parameters(model: nn.Module) -> set[int]:
    """The ids of ``model``'s posterior parameters: those of its Bayesian layers and noise
    parametrizations, and the means these perturb."""
    found = {id(p) for m in model.modules() if isinstance(m, NoisyModule) for p in m.parameters()}
    return found | {id(loc) for _, loc in noise_parametrizations(model)}


def bayesian(
    module: nn.Module,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    *,
    prior: Distribution | None = None,
    init_scale: float = 0.1,
    flipout: bool = False,
) -> nn.Module:
    """A Bayesian copy of ``module`` (the original is untouched).

    Args:
        module: any ``nn.Module``.
        include: parameter names (``"0.weight"``) or module names (``"0"``, all its
            parameters) to make Bayesian; ``None`` means every parameter.
        exclude: names to keep deterministic, applied after ``include``.
        prior: the per-weight prior for all of them (default ``Normal(0, 1)``).
        init_scale: initial posterior sds, see :class:`BayesLinear`.
        flipout: Flipout instead of local reparameterization in converted Linear layers.

    Raises:
        ValueError: ``include`` or ``exclude`` names something the model does not have.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    prior = check_prior(prior)
    initial_scale(init_scale, 1)  # validates
    all_names = [n for n, _ in module.named_parameters()]
    included = _expand(include, "include", all_names)
    excluded = _expand(exclude, "exclude", all_names) or set()
    selected = (set(all_names) if included is None else included) - excluded
    variational = _variational_parameters(module)
    noisy = sorted(name for name, p in module.named_parameters() if name in selected
                   and id(p) in variational)
    if noisy:
        raise ValueError(
            f"module must not be Bayesian already where it is converted, got {len(noisy)} "
            f"parameter(s) of Bayesian layers ({', '.join(noisy[:4])}"
            f"{', ...' if len(noisy) > 4 else ''}): their posterior means and scales would get "
            f"noise of their own; convert the plain network, or exclude those layers"
        )
    model = copy.deepcopy(module)
    done: set[str] = set()
    options = {"prior": prior, "init_scale": init_scale}
    for name, sub in list(model.named_modules()):
        prefix = name + "." if name else ""
        if f"{prefix}weight" not in selected:
            continue
        new: nn.Module
        if type(sub) is nn.Linear:
            new = BayesLinear.from_linear(
                sub, bayesian_bias=f"{prefix}bias" in selected, flipout=flipout, **options
            )
        elif type(sub) is nn.Conv2d and sub.padding_mode == "zeros" and not isinstance(
            sub.padding, str
        ):
            new = BayesConv2d.from_conv(sub, bayesian_bias=f"{prefix}bias" in selected, **options)
        else:
            continue
        if not name:
            model = new
        else:
            parent_name, _, child = name.rpartition(".")
            setattr(_owner(model, parent_name), child, new)
        done.update({f"{prefix}weight", f"{prefix}bias"})
    for name in sorted(selected - done):
        owner_name, _, attr = name.rpartition(".")
        owner = _owner(model, owner_name)
        loc = getattr(owner, attr)
        parametrize.register_parametrization(owner, attr, MeanFieldNoise(loc, prior, init_scale))
    return model
