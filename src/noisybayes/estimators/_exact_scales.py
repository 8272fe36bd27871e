"""The exact posterior of the gaussian identity-link model with a learned noise scale or group
terms: Gaussian given its scales, the scales integrated on a grid.

    y_std = D beta + sum_t sum_j z_tj b_t[g_t, j] + sigma eps,   b_t[:, j] ~ N(0, sd_tj^2),

on the standardised data (``standardised_twin``), ``D = [1, x_std]``, ``beta``'s prior
Normal or flat. Every column of ``G = [D, one-hot(g_t) * z_t ...]`` has a fixed or a scaled
Normal prior (or none), so ``infer.scale_grid.ScaleGridPosterior`` gives the posterior from
``G^T G``, ``G^T y`` and ``y^T y``, summed group by group without forming ``G``. Draws are read
in the twin's unconstrained coordinates (``log sigma``, ``log sd``, the non-centred ``z = b /
sd``) and mapped to the user's by ``user_map``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Normal

from noisybayes._rng import make_generator
from noisybayes.estimators._exact import DesignSums
from noisybayes.estimators._glm_model import GLMModel, standardised_twin, user_map
from noisybayes.estimators._group_effects import group_inputs
from noisybayes.estimators._identifiability import design_of
from noisybayes.infer.objective import Data
from noisybayes.infer.posterior import FitInfo, GaussianPosterior
from noisybayes.infer.scale_grid import MAX_SCALES, ScaleGridPosterior
from noisybayes.model.layout import ParamLayout
from noisybayes.tables.group_terms import GroupData

__all__ = ["grid_dense_columns", "grid_scales", "scale_grid_from_sums", "scale_grid_posterior"]

_Block = tuple[torch.Tensor, torch.Tensor, int]  # (level of each row, values (N, q), levels)


_ELEMENTS = 1 << 22  # rows x q_a x q_b held at once when summing a pair of blocks


def _gram(blocks: list[_Block], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G^T G`` and ``G^T y`` of ``G = [one-hot(level_1) * values_1, ...]``, columns ordered
    level-major within a block (as a ``(levels, q)`` parameter flattens), in float64: a
    product of the values for two blocks of one level each (the design), sums by level pair
    over chunks of rows otherwise."""
    grams: list[list[torch.Tensor]] = []
    moments = []
    for index_a, values_a, levels_a in blocks:
        if levels_a == 1:
            moments.append(values_a.T @ y)
        else:
            moments.append(values_a.new_zeros(levels_a, values_a.shape[1]).index_add_(
                0, index_a, values_a * y[:, None]).reshape(-1))
        grams.append([_pair(index_a, values_a, levels_a, index_b, values_b, levels_b)
                      for index_b, values_b, levels_b in blocks])
    return torch.cat([torch.cat(row, 1) for row in grams]), torch.cat(moments)


def _pair(index_a: torch.Tensor, values_a: torch.Tensor, levels_a: int,
          index_b: torch.Tensor, values_b: torch.Tensor, levels_b: int) -> torch.Tensor:
    """The ``(levels_a q_a, levels_b q_b)`` block of ``G^T G`` between two blocks."""
    q_a, q_b = values_a.shape[1], values_b.shape[1]
    if levels_a == levels_b == 1:
        return values_a.T @ values_b
    pairs = values_a.new_zeros(levels_a * levels_b, q_a, q_b)
    rows = max(1, _ELEMENTS // max(1, q_a * q_b))
    for start in range(0, len(index_a), rows):
        part = slice(start, start + rows)
        outer = values_a[part, :, None] * values_b[part, None, :]
        pairs.index_add_(0, index_a[part] * levels_b + index_b[part], outer)
    return (pairs.reshape(levels_a, levels_b, q_a, q_b).permute(0, 2, 1, 3)
            .reshape(levels_a * q_a, levels_b * q_b))


def _term_slots(twin: GLMModel, order: list[int], n_fixed: int
                ) -> list[tuple[slice, slice, slice, slice]]:
    """Per group term of ``twin``: its effects' and sds' slices of ``u``, of ``G``'s columns
    (the terms in ``order`` after ``D``'s ``n_fixed``) and of the log scales (in the terms'
    own order, then ``sigma``)."""
    blocks = {blk.name: blk for blk in ParamLayout(twin).blocks}
    columns, start = {}, n_fixed
    for t in order:
        effect = blocks[twin.groups[t].effect]
        columns[t] = slice(start, start + effect.stop - effect.start)
        start = columns[t].stop
    slots, scale = [], 0
    for t, g in enumerate(twin.groups):
        effect, sd = blocks[g.effect], blocks[g.sd]
        width = sd.stop - sd.start
        slots.append((slice(effect.start, effect.stop), slice(sd.start, sd.stop), columns[t],
                      slice(scale, scale + width)))
        scale += width
    return slots


class _GridDraws(nn.Module):
    """A ``ScaleGridPosterior`` read in the unconstrained coordinates of ``model`` (the user's,
    ``u = A u_std + b`` from the twin's): ``mean``, ``variance``, ``rsample`` as
    ``GaussianPosterior`` reads a family."""

    def __init__(self, grid: ScaleGridPosterior, twin: GLMModel, A: torch.Tensor,
                 b: torch.Tensor, slots: list[tuple[slice, slice, slice, slice]],
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.grid, self.A, self.b, self.terms = grid, A, b, slots
        blocks = {blk.name: blk for blk in ParamLayout(twin).blocks}
        self.size = max(blk.stop for blk in blocks.values())
        self.fixed = torch.cat([torch.arange(blocks[n].start, blocks[n].stop)
                                for n in ("intercept", "coef") if n in blocks])
        self.sigma = blocks["sigma"].start if "sigma" in blocks else None
        self.group_names = [(g.sd, g.effect) for g in twin.groups]  # in the slots' order
        moments = grid.moments
        mean = self._unconstrained(moments.joint_mean[None], moments.log_scale_mean[None],
                                   moments.scaled_mean[None])[0]
        variance = self._unconstrained(
            moments.joint_covariance.diagonal()[None],
            moments.log_scale_covariance.diagonal()[None], moments.scaled_variance[None])[0]
        covariance = torch.diag(variance)
        covariance[self.fixed[:, None], self.fixed] = moments.joint_covariance
        self._mean = (A @ mean + b).to(dtype)
        self._variance = (A @ covariance @ A.T).diagonal().to(dtype)

    def _unconstrained(self, joint: torch.Tensor, log_scale: torch.Tensor,
                       scaled: torch.Tensor) -> torch.Tensor:
        """``u_std`` ``(n, size)`` from ``D``'s columns of ``theta`` ``(n, k + p)``, ``log s``
        ``(n, S)`` (each term's sds, then ``sigma``) and ``theta`` over its scales ``(n, M)``
        (or any quantities placed alike: moments)."""
        u = joint.new_zeros(joint.shape[0], self.size)
        u[:, self.fixed] = joint[:, : self.grid.n_joint]
        for effect, sd, columns, scales in self.terms:
            u[:, effect] = scaled[:, columns]
            u[:, sd] = log_scale[:, scales]
        if self.sigma is not None:
            u[:, self.sigma] = log_scale[:, -1]
        return u

    def mean(self) -> torch.Tensor:
        return self._mean

    def variance(self) -> torch.Tensor:
        return self._variance

    def transformed_moments(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The means and sds of the constrained parameters from the grid's own moments, no
        draws: each group term's sds ``s_k e^{b_k}`` (``b_k`` the ``log`` shift of
        ``user_map``) and effects ``theta_c e^{b_k(c)}`` (``z s_k`` on the user's scale),
        and ``sigma e^{b}``."""
        if not hasattr(self, "group_names"):  # pickled before these moments: drawn instead
            return {}
        moments = self.grid.moments

        def scales(index: slice | int, slot: slice | int) -> tuple[torch.Tensor, torch.Tensor]:
            unit = self.b[slot].exp()
            return moments.scale_mean[index] * unit, moments.scale_variance[index].sqrt() * unit

        found = {}
        for (sd_name, effect_name), (_, sd, columns, which) in zip(
                self.group_names, self.terms, strict=True):
            found[sd_name] = scales(which, sd)
            unit = self.b[sd].exp()
            per_column = unit.repeat((columns.stop - columns.start) // len(unit))
            found[effect_name] = (
                (moments.mean[columns] * per_column).reshape(-1, len(unit)),
                (moments.variance[columns].sqrt() * per_column).reshape(-1, len(unit)))
        if self.sigma is not None:
            found["sigma"] = scales(-1, self.sigma)
        dtype = self._mean.dtype
        return {k: (mean.to(dtype), sd.to(dtype)) for k, (mean, sd) in found.items()}

    def rsample(self, n: int, *, generator: torch.Generator | None = None, **_: Any
                ) -> torch.Tensor:
        theta, log_scale = self.grid.sample(n, make_generator(None, generator))
        scaled = theta / self.grid.column_scales(log_scale)
        u = self._unconstrained(theta, log_scale, scaled)
        return (u @ self.A.T + self.b).to(self._mean.dtype)


def grid_scales(noise_learned: bool, groups: Sequence[GroupData]) -> int:
    """How many scales the exact posterior integrates: each group term's sds, one per varying
    column, and the noise sd where it is learned."""
    return sum(len(rows.term.columns) for rows in groups) + int(noise_learned)


def grid_dense_columns(n_design: int, groups: Sequence[GroupData]) -> int:
    """The columns of ``G`` each lattice point solves densely: the design's ``n_design`` and
    every group term's effects but the largest term's (eliminated level by level)."""
    effects = [len(rows.term.labels) * len(rows.term.columns) for rows in groups]
    return n_design + sum(effects) - max(effects, default=0)


class _ScalePrior:
    """``log p(s)`` of a batch of scales ``(B, S)``: each group term's sds (``priors``: the
    prior and the number of sds of each), then ``sigma`` (``noise_prior``; ``None``: flat or
    known). A class rather than a closure, so that a fitted estimator pickles."""

    def __init__(self, priors: list[tuple[Distribution, int]],
                 noise_prior: Distribution | None) -> None:
        self.priors, self.noise_prior = priors, noise_prior

    def __call__(self, scales: torch.Tensor) -> torch.Tensor:
        total, start = scales.new_zeros(len(scales)), 0
        for prior, width in self.priors:
            total = total + prior.log_prob(scales[:, start : start + width]).sum(-1)
            start += width
        if self.noise_prior is not None:
            total = total + self.noise_prior.log_prob(scales[:, -1])
        return total


def scale_grid_posterior(model: GLMModel, X: torch.Tensor, y: torch.Tensor,
                         groups: Sequence[GroupData] = (), reason: str | None = None
                         ) -> GaussianPosterior:
    """The exact posterior of the gaussian identity-link ``model`` (a Normal or flat ``coef``
    prior; a learned or known noise scale; group terms with the rows ``groups``) given ``X``
    ``(N, d)`` and ``y`` ``(N,)`` on the user's scale; more than ``MAX_SCALES`` scales are a
    ``ValueError`` naming ``method``. ``reason`` (why it is exact) goes to ``info``."""
    n_scales = grid_scales(model.noise_scale is None, groups)
    if n_scales > MAX_SCALES:
        raise ValueError(
            f"method='exact' integrates at most {MAX_SCALES} scales (the noise sd and one sd "
            f"per varying column of each group term), got {n_scales}: fit with method='vi'")
    x_std, y_std = model.standardise_x(X).double(), model.standardise_y(y).double()
    design = design_of(x_std, model.fit_intercept)
    inputs = group_inputs(model.groups, groups, torch.float64)
    terms = [(index, z, len(g.labels))
             for g, index, z in zip(model.groups, inputs[0::2], inputs[1::2], strict=True)]
    # the term of most effects last: its columns are eliminated level by level
    order = sorted(range(len(terms)), key=lambda t: terms[t][1].shape[1] * terms[t][2])
    blocks = [(torch.zeros(len(y), dtype=torch.long), design, 1)] + [terms[t] for t in order]
    gram, moment = _gram(blocks, y_std)
    last = (terms[order[-1]][2], terms[order[-1]][1].shape[1]) if terms else (0, 1)
    data = (tuple(t.to(X.dtype) if t.is_floating_point() else t for t in (x_std, *inputs)),
            y_std.to(X.dtype))
    return scale_grid_from_sums(model, DesignSums(gram, moment, y_std @ y_std, len(y)),
                                order, last, data, reason)


def scale_grid_from_sums(model: GLMModel, sums: DesignSums, order: Sequence[int] = (),
                         blocked: tuple[int, int] = (0, 1), data: Data | None = None,
                         reason: str | None = None) -> GaussianPosterior:
    """:func:`scale_grid_posterior` from the sums of ``G = [D, the group terms in order]``
    (``blocked``: the last term's levels and columns; the sums of a data source or of every
    process, without group terms), keeping the standardised rows ``data`` where given."""
    started = time.perf_counter()
    twin = standardised_twin(model)
    n_fixed = len(model.x_scale) + int(model.fit_intercept)
    gram = sums.gram.double()
    fixed_precision = torch.zeros(gram.shape[0], dtype=torch.float64)
    column_scale = torch.full((gram.shape[0],), -1, dtype=torch.long)
    coef = twin.param_specs["coef"].prior if "coef" in twin.param_specs else None
    if coef is not None:
        if not isinstance(coef, Normal) or bool((coef.loc != 0).any()):
            raise ValueError("method='exact' needs a Normal(0, s) or flat coefficient prior")
        fixed_precision[int(model.fit_intercept) : n_fixed] = coef.scale.double().pow(-2)
    slots = _term_slots(twin, list(order), n_fixed)
    for _, _, columns, scales in slots:
        levels = (columns.stop - columns.start) // (scales.stop - scales.start)
        column_scale[columns] = torch.arange(scales.start, scales.stop).repeat(levels)
    priors: list[tuple[Distribution, int]] = []
    for g in twin.groups:
        prior = twin.param_specs[g.sd].prior
        assert prior is not None  # group_effects refuses a flat one
        priors.append((prior, len(g.columns)))
    noise_prior = twin.param_specs["sigma"].prior if "sigma" in twin.param_specs else None
    grid = ScaleGridPosterior(gram, sums.moment, sums.sum_of_squares, sums.n_data,
                              fixed_precision, column_scale, _ScalePrior(priors, noise_prior),
                              noise_scale=twin.noise_scale, blocked=blocked, n_joint=n_fixed)
    A, b = user_map(model)
    draws = _GridDraws(grid, twin, A.double(), b.double(), slots, model.x_scale.dtype)
    counted = "1 scale" if grid.n_scales == 1 else f"{grid.n_scales} scales"
    how = (f"exact: Gaussian given its {counted}, integrated over them on "
           f"{len(grid.points)} grid points")
    info = replace(FitInfo.closed_form(sums.n_data), reason=how, family_reason=reason or how,
                   seconds=time.perf_counter() - started)
    return GaussianPosterior(model, ParamLayout(model), draws, info, data)  # type: ignore[arg-type]
