"""Group effects of a linear predictor: the terms ``(expr | group)`` of a formula.

    eta_i += sum_j Z_ij b[g_i, j],   b[:, j] ~ N(0, sd_j),   sd_j ~ prior

for each term (``noisybayes.tables.group_terms``), the columns ``j`` of ``Z`` independent
(bambi's default). The effects have one more row than the groups seen when fitting: that
row meets no data, so its posterior is the population distribution ``N(0, sd)`` given the
data, which is what a new group's effect is; rows of an unseen group use it. The effects are
fitted non-centred, ``b = sd * z`` (``nb.param``'s default), which removes the funnel
between ``b`` and ``sd``.

``Z`` reaches the model divided by ``z_scale``, its columns' root mean squares (not
centred: centring would mix a slope's effect into the intercept's), so the fit sees
columns of unit scale whatever their units or offset (a ``year`` column too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Distribution, HalfNormal, Normal, constraints

from noisybayes.estimators._base import location_and_scale, resolve_prior
from noisybayes.model.model import Model
from noisybayes.model.param import param
from noisybayes.tables.group_terms import GroupData

__all__ = ["GroupEffects", "add_group_params", "group_effects", "group_inputs", "group_sum"]


@dataclass(frozen=True)
class GroupEffects:
    """One group term as the model holds it: ``name`` prefixes its parameters
    (``{name}_effect`` ``(n_levels + 1, q)`` and ``{name}_sd`` ``(q,)``), ``group`` is the
    grouping column, ``labels`` the levels and the new group's slot, ``columns`` the
    varying columns, ``z_scale`` ``(q,)`` their scale and ``sd_prior`` (batch ``(q,)``) the
    prior of each ``sd_j`` in the linear predictor's units."""

    name: str
    group: str
    labels: tuple[str, ...]
    columns: tuple[str, ...]
    z_scale: torch.Tensor
    sd_prior: Distribution

    @property
    def effect(self) -> str:
        return f"{self.name}_effect"

    @property
    def sd(self) -> str:
        return f"{self.name}_sd"


def group_effects(data: Sequence[GroupData], prior: Any, response_sd: float,
                  dtype: torch.dtype) -> tuple[GroupEffects, ...]:
    """The ``GroupEffects`` of formula group terms from their rows at fit time, ``data``:
    ``sd_j ~ prior`` (a torch Distribution, for every column of every term) or, for
    ``"auto"``, ``HalfNormal(2.5 response_sd / sd(Z_j))`` (the default coefficient prior's
    scale, as bambi and rstanarm scale theirs)."""
    out: list[GroupEffects] = []
    for rows in data:
        term = rows.term
        Z = torch.tensor(rows.Z, dtype=dtype)
        _, z_sd = location_and_scale(Z, centre=False)
        rms = Z.square().mean(0).sqrt()
        z_scale = torch.where(rms > 0, rms, torch.ones_like(rms))
        auto = HalfNormal(2.5 * response_sd / z_sd)
        sd_prior = resolve_prior("group_prior", prior, auto)
        if sd_prior is None:
            raise TypeError("group_prior must be a torch Distribution or 'auto', got None "
                            "(a flat prior on a group sd leaves the posterior improper)")
        if sd_prior.batch_shape != z_scale.shape:
            sd_prior = sd_prior.expand(z_scale.shape)
        taken = sum(g.group == term.group for g in out)
        name = term.group if not taken else f"{term.group}_{taken + 1}"
        out.append(GroupEffects(name, term.group, term.labels, term.columns, z_scale, sd_prior))
    return tuple(out)


class EffectPrior:
    """``b ~ N(0, sd)`` of shape ``(levels, q)``, ``sd`` the model's parameter ``sd_name``
    (a class rather than a closure, so that a fitted estimator pickles)."""

    def __init__(self, sd_name: str, shape: tuple[int, int]) -> None:
        self.sd_name, self.shape = sd_name, shape

    def __call__(self, m: Any) -> Normal:
        scale = getattr(m, self.sd_name).expand(self.shape)
        return Normal(torch.zeros_like(scale), scale)


def add_group_params(model: Model, groups: tuple[GroupEffects, ...]) -> None:
    """Declare ``{name}_sd`` and the non-centred ``{name}_effect`` of each group on ``model``."""
    for g in groups:
        setattr(model, g.sd, param(g.sd_prior, support=constraints.positive))
        shape = (len(g.labels), len(g.columns))
        setattr(model, g.effect, param(EffectPrior(g.sd, shape), shape=shape))


def group_sum(model: Model, groups: tuple[GroupEffects, ...],
              inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | float:
    """``sum_k sum_j Z_kj b_k[g_k, j]`` from ``inputs = (index_1, z_1, index_2, z_2, ...)``
    (``z_k`` the scaled columns ``Z_k / z_scale_k``)."""
    total: torch.Tensor | float = 0.0
    for g, index, z in zip(groups, inputs[0::2], inputs[1::2], strict=True):
        effect = getattr(model, g.effect)
        total = total + (z * (g.z_scale * effect[index])).sum(-1)
    return total


def group_inputs(groups: tuple[GroupEffects, ...], data: Sequence[GroupData],
                 dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``(index_1, z_1, ...)`` of the rows in ``data`` (``GroupData`` per term)."""
    out: list[torch.Tensor] = []
    for g, rows in zip(groups, data, strict=True):
        Z = torch.tensor(rows.Z, dtype=dtype)
        out += [torch.tensor(rows.index), Z / g.z_scale.to(dtype)]
    return tuple(out)
