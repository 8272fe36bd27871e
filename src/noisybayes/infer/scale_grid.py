"""The exact posterior of a linear-Gaussian model whose prior and noise scales are uncertain.

    y = G theta + sigma eps,   eps ~ N(0, I),
    theta_c ~ N(0, s_k^2) for the columns c of scale k,  N(0, 1 / lambda_c) or flat otherwise,

with any prior on the scales ``s = (s_1..s_K, sigma)`` (``sigma`` left out when known).
Given ``s`` the posterior of ``theta`` is ``N(Lambda^{-1} b, Lambda^{-1})`` with ``Lambda =
G^T G / sigma^2 + diag(lambda_0(s))`` and ``b = G^T y / sigma^2``, and the evidence is

    log p(y | s) = -n log sigma - y^T y / (2 sigma^2)
                   + (b^T Lambda^{-1} b - log|Lambda| + sum_c log lambda_0c) / 2 + const

(flat columns left out of the sum). The scales are integrated over ``l = log s``: L-BFGS finds
the mode ``l*`` of ``log p(l | y)``, its curvature there whitens them, ``l = l* + R z`` with
``R R^T = H^{-1}``, and ``z`` runs over a lattice of step ``h`` flooded outward from the mode
while ``log p`` stays within ``_CUTOFF`` nats of it (INLA's grid, Rue, Martino & Chopin 2009;
the Gaussian likelihood makes each conditional exact, so there is no Laplace step). The
lattice's sums converge like ``exp(-2 pi^2 / h^2)`` for a smooth ``p(z | y)``; the larger
error is the mass left beyond the cutoff, about ``P(chi^2_S > 20)``: 5e-5 of it with one
scale, 5e-4 with four. The data enter only through ``G^T G``, ``G^T y``, ``y^T y`` and ``n``.

With many group effects ``G^T G`` is mostly block-diagonal: the trailing ``levels x q``
columns of one grouping factor meet each other only within a level. They are eliminated
level by level (the Schur complement onto the other, dense, columns: Bates et al. 2015's
mixed-model algebra), so each lattice point costs ``levels q^3 + levels q d^2 + d^3`` for ``d``
dense columns instead of ``(levels q + d)^3``.

Draws take a lattice point by its weight and spread the scales uniformly over the point's
cell (the posterior's histogram, whose covariance exceeds the lattice's by the cells'
``h^2 / 12 R R^T``), shrink them about their mean by the linear map that takes that excess
out (so that their mean and covariance are the lattice's), and draw ``theta`` from the
Gaussian given them. The steps are set so that a finer lattice moves the moments by far
less than the accuracy asked of a fit (the comparisons are in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property

import torch

from noisybayes.infer.minimize import NonFinite, minimize

__all__ = ["MAX_DENSE", "MAX_SCALES", "GridMoments", "ScaleGridPosterior"]

_CUTOFF = 10.0  # nats below the mode: points beyond carry under e^-10 of its density each
_STEPS = {1: 0.15, 2: 0.5, 3: 0.7, 4: 0.8}  # the lattice step by the number of scales
MAX_SCALES = max(_STEPS)
_MAX_POINTS = 60_000
_BATCH_ELEMENTS = 1 << 23  # floats a batch of lattice points may hold in its conditionals
MAX_DENSE = 2000  # columns outside the eliminated grouping factor, each point's dense solve


@dataclass(frozen=True)
class GridMoments:
    """Posterior moments: the joint mean ``(n,)`` and covariance ``(n, n)`` of ``theta``'s
    first ``n`` columns (``n_joint``); the mean and variance ``(M,)`` of every ``theta_c``
    and of ``theta_c / s_k(c)`` (each column over its scale: the non-centred coordinates;
    ``theta_c`` itself for unscaled columns); ``l = log s``'s mean ``(S,)`` and covariance
    ``(S, S)``, and the mean and variance ``(S,)`` of ``s`` itself."""

    joint_mean: torch.Tensor
    joint_covariance: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor
    scaled_mean: torch.Tensor
    scaled_variance: torch.Tensor
    log_scale_mean: torch.Tensor
    log_scale_covariance: torch.Tensor
    scale_mean: torch.Tensor
    scale_variance: torch.Tensor


@dataclass(frozen=True)
class _Conditional:
    """``N(mean, Lambda^{-1})`` of ``theta`` given a batch of ``B`` scales, ``Lambda`` held as
    the Cholesky factor ``dense`` ``(B, d, d)`` of the Schur complement ``S = Lambda_dd -
    Lambda_db Lambda_bb^{-1} Lambda_bd``, the factors ``blocks`` ``(B, L, q, q)`` of the
    diagonal blocks ``Lambda_bb``, their inverses ``block_inverse`` and ``coupling =
    Lambda_bb^{-1} Lambda_bd`` ``(B, L, q, d)``."""

    mean: torch.Tensor
    dense: torch.Tensor
    blocks: torch.Tensor
    block_inverse: torch.Tensor
    coupling: torch.Tensor

    @cached_property
    def _dense_inverse_factor(self) -> torch.Tensor:
        """``F = dense^{-1}``, so that ``S^{-1} = F^T F`` (once: the variances and the joint
        covariance both read it)."""
        eye = torch.eye(self.dense.shape[-1], dtype=self.dense.dtype).expand_as(self.dense)
        return torch.linalg.solve_triangular(self.dense, eye, upper=False)

    def variance(self) -> torch.Tensor:
        """``diag(Lambda^{-1})`` ``(B, M)``: ``S^{-1}``'s for the dense columns and
        ``diag(Lambda_bb^{-1} + W S^{-1} W^T)`` for the blocked ones (``W = coupling``)."""
        factor = self._dense_inverse_factor
        dense = factor.square().sum(-2)
        own = self.block_inverse.diagonal(dim1=-2, dim2=-1)
        shared = (self.coupling @ factor.mT[:, None]).square().sum(-1)
        return torch.cat([dense, (own + shared).flatten(1)], 1)

    def joint_covariance(self, n: int) -> torch.Tensor:
        """The covariance ``(B, n, n)`` of the first ``n <= d`` (dense) columns."""
        factor = self._dense_inverse_factor[..., :n]
        return factor.mT @ factor

    def draw(self, noise: torch.Tensor) -> torch.Tensor:
        """Draws ``(B, M)`` from standard normal ``noise`` ``(B, M)``: the dense columns from
        ``N(m_d, S^{-1})``, then each level's given them."""
        d = self.dense.shape[-1]
        dense = torch.linalg.solve_triangular(self.dense.mT, noise[:, :d, None], upper=True)[..., 0]
        blocked_noise = noise[:, d:].reshape(*self.blocks.shape[:-1], 1)
        if self.blocks.shape[-1] == 1:  # scalar blocks: a division
            own = (blocked_noise / self.blocks)[..., 0]
        else:
            own = torch.linalg.solve_triangular(self.blocks.mT, blocked_noise, upper=True)[..., 0]
        blocked = own - (self.coupling @ dense[:, None, :, None])[..., 0]
        return self.mean + torch.cat([dense, blocked.flatten(1)], 1)


class ScaleGridPosterior:
    """The posterior of ``(theta, log s)`` from the sums of ``G`` ``(N, M)`` and ``y``:
    ``gram = G^T G``, ``moment = G^T y``, ``sum_of_squares = y^T y``, ``n_data = N``.

    ``fixed_precision`` ``(M,)`` is ``lambda_c`` for columns of a fixed Normal prior (0:
    flat), ``column_scale`` ``(M,)`` the index ``k`` of the scale that is the prior sd of
    column ``c`` (-1 for none); ``log_scale_prior(s)`` gives ``log p(s)`` for a batch of
    scales ``(B, S)`` (``s_1..s_K``, then ``sigma`` unless ``noise_scale`` is given). The last
    ``levels x q`` columns (``blocked``; ``(0, 1)``: none) are one grouping factor's, level
    by level, and meet each other in ``gram`` only within a level. ``moments`` hold the joint
    moments of the first ``n_joint`` columns. ``step``: the lattice's (by default
    ``_STEPS``' for the number of scales). Raises ``ValueError`` where the scales' posterior
    has no mode or is too wide to grid.
    """

    def __init__(
        self,
        gram: torch.Tensor,
        moment: torch.Tensor,
        sum_of_squares: torch.Tensor,
        n_data: int,
        fixed_precision: torch.Tensor,
        column_scale: torch.Tensor,
        log_scale_prior: Callable[[torch.Tensor], torch.Tensor],
        *,
        noise_scale: float | None = None,
        blocked: tuple[int, int] = (0, 1),
        n_joint: int = 0,
        step: float | None = None,
    ) -> None:
        gram, moment = gram.double(), moment.double()
        levels, q = blocked
        d = gram.shape[0] - levels * q
        if d > MAX_DENSE:
            raise ValueError(
                f"the grid's dense part must have at most {MAX_DENSE} columns (the design and "
                f"every group term but the largest), got {d}: fit with method='vi'")
        self.n_dense, self.blocked, self.n_joint = d, blocked, n_joint
        per_point = levels * q * (d + 2 * q) + 2 * d * d + gram.shape[0]
        self._chunk = max(1, min(256, _BATCH_ELEMENTS // per_point))
        self.gram_dense = gram[:d, :d]
        per_level = torch.arange(levels * q).reshape(levels, q) + d
        self.gram_blocks = gram[per_level[:, :, None], per_level[:, None, :]]  # (L, q, q)
        self.gram_coupling = gram[per_level, :d]  # (L, q, d)
        self.moment = moment
        self.sum_of_squares, self.n_data = float(sum_of_squares), n_data
        self.fixed_precision = fixed_precision.double()
        self.column_scale = column_scale.long()
        fixed = (self.fixed_precision > 0) & (self.column_scale < 0)  # flat: left out
        self._fixed_log_det = float(self.fixed_precision[fixed].log().sum())
        self.n_prior_scales = int(self.column_scale.max()) + 1
        self.noise_scale = noise_scale
        self.log_scale_prior = log_scale_prior
        self.n_scales = self.n_prior_scales + (noise_scale is None)
        if self.n_scales not in _STEPS:
            raise ValueError(f"the grid integrates 1 to {MAX_SCALES} scales, got {self.n_scales}")
        self.step = _STEPS[self.n_scales] if step is None else step
        self.mode, self.whitening = self._mode_and_whitening()
        self.points, self.log_weight, self.moments = self._lattice()

    def _conditionals(self, log_scale: torch.Tensor) -> tuple[torch.Tensor, _Conditional]:
        """For log scales ``(B, S)``: ``log p(l | y)`` up to a constant ``(B,)`` (``-inf`` where
        the precision is not positive definite) and the Gaussians of ``theta`` given them."""
        scales = log_scale.exp()
        if self.noise_scale is None:
            variance = scales[:, -1].square()
        else:
            variance = torch.full_like(scales[:, 0], self.noise_scale**2)
        log_sd = torch.cat([log_scale[:, : self.n_prior_scales],
                            log_scale.new_zeros(len(log_scale), 1)], 1)[:, self.column_scale]
        scaled = self.column_scale >= 0  # index -1 above: the column of zeros
        precision0 = torch.where(scaled, log_sd.mul(-2).exp(), self.fixed_precision)
        d, (levels, q) = self.n_dense, self.blocked
        inverse_variance = variance.reciprocal()
        block_precision = (self.gram_blocks * inverse_variance[:, None, None, None]
                           + torch.diag_embed(precision0[:, d:].reshape(len(log_scale), levels, q)))
        blocks, block_inverse, failed_blocks = _factor_blocks(block_precision)
        coupling_precision = self.gram_coupling * inverse_variance[:, None, None, None]
        coupling = block_inverse @ coupling_precision
        schur = (self.gram_dense * inverse_variance[:, None, None]
                 + torch.diag_embed(precision0[:, :d])
                 - torch.einsum("blqi,blqj->bij", coupling_precision, coupling))
        dense, failed = torch.linalg.cholesky_ex(schur)
        b = self.moment * inverse_variance[:, None]
        b_blocks = b[:, d:].reshape(len(log_scale), levels, q, 1)
        within = (block_inverse @ b_blocks)[..., 0]  # Lambda_bb^{-1} b_b
        dense_rhs = b[:, :d] - torch.einsum("blqi,blq->bi", coupling_precision, within)
        mean_dense = torch.cholesky_solve(dense_rhs[..., None], dense)[..., 0]
        mean_blocked = within - (coupling @ mean_dense[:, None, :, None])[..., 0]
        mean = torch.cat([mean_dense, mean_blocked.flatten(1)], 1)
        log_det = 2 * (dense.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                       + blocks.diagonal(dim1=-2, dim2=-1).log().sum((-1, -2)))
        prior_log_det = -2 * torch.where(scaled, log_sd, 0.0).sum(-1) + self._fixed_log_det
        log_density = (
            -0.5 * self.n_data * variance.log() - 0.5 * self.sum_of_squares * inverse_variance
            + 0.5 * ((b * mean).sum(-1) - log_det + prior_log_det)
            + self.log_scale_prior(scales) + log_scale.sum(-1)
        )
        ok = (failed == 0) & (failed_blocks == 0).all(-1) & torch.isfinite(log_density)
        return (torch.where(ok, log_density, -torch.inf),
                _Conditional(mean, dense, blocks, block_inverse, coupling))

    def _mode_and_whitening(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``l*`` and ``R`` with ``R R^T`` the inverse of ``-d^2 log p(l | y)`` at ``l*``."""

        def negative(log_scale: torch.Tensor) -> torch.Tensor:
            return -self._conditionals(log_scale[None])[0][0]

        def loss_and_grad(log_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            log_scale = log_scale.detach().requires_grad_(True)
            value = negative(log_scale)
            if not torch.isfinite(value):
                return value.detach(), torch.zeros_like(log_scale)
            return value.detach(), torch.autograd.grad(value, log_scale)[0]

        # the best of a coarse batch (scales 0.03 to 1 on the standardised data) as the start
        coarse = torch.linspace(math.log(0.03), 0.0, 5, dtype=torch.float64)
        candidates = torch.cartesian_prod(*[coarse] * self.n_scales).reshape(-1, self.n_scales)
        with torch.no_grad():
            density = torch.cat([self._conditionals(part)[0]
                                 for part in torch.split(candidates, self._chunk)])
            start = candidates[int(density.argmax())]
        try:
            found = minimize(loss_and_grad, start, max_evaluations=500, gradient_tolerance=1e-4)
        except NonFinite as error:
            raise ValueError(
                "the scales' posterior density is not finite at the grid's start (log scales "
                f"{start.tolist()}): a singular precision, e.g. flat priors on collinear "
                "columns") from error
        curvature = torch.autograd.functional.hessian(negative, found.point)
        eigenvalues, eigenvectors = torch.linalg.eigh(curvature)
        if not bool(torch.isfinite(eigenvalues).all()) or float(eigenvalues.min()) <= 0:
            raise ValueError(
                "the scales' posterior has no mode to grid around (its curvature at "
                f"log scales {found.point.tolist()} is not positive definite): give them "
                "proper priors, or fit with method='vi'")
        return found.point, eigenvectors * eigenvalues.rsqrt()

    def _lattice(self) -> tuple[torch.Tensor, torch.Tensor, GridMoments]:
        """The lattice points' log scales ``(P, S)`` and normalised log weights ``(P,)``, and
        the moments their conditionals sum to, flooded outward from the mode."""
        peak = float(self._conditionals(self.mode[None])[0][0])
        seen: set[tuple[int, ...]] = {(0,) * self.n_scales}
        frontier = [(0,) * self.n_scales]
        kept_points, kept_density = [], []
        sums = _MomentSums(self.moment.shape[0], self.n_joint, self.n_scales)
        while frontier:
            if len(seen) > _MAX_POINTS:
                raise ValueError(
                    f"the scales' posterior is too wide or skewed to integrate on a grid (over "
                    f"{_MAX_POINTS} points of step {self.step} sd): fit with method='vi'")
            offsets = torch.tensor(frontier, dtype=torch.float64) * self.step
            log_scale = self.mode + offsets @ self.whitening.T
            inside = []
            for chunk in torch.split(torch.arange(len(frontier)), self._chunk):
                density, conditional = self._conditionals(log_scale[chunk])
                keep = density > peak - _CUTOFF
                if keep.any():
                    sums.add(log_scale[chunk][keep], density[keep] - peak,
                             _select(conditional, keep), self.column_scales(log_scale[chunk][keep]))
                    kept_points.append(log_scale[chunk][keep])
                    kept_density.append(density[keep])
                inside += [frontier[i] for i in chunk[keep].tolist()]
            frontier = []
            for point in inside:
                for axis in range(self.n_scales):
                    for step in (-1, 1):
                        near = point[:axis] + (point[axis] + step,) + point[axis + 1 :]
                        if near not in seen:
                            seen.add(near)
                            frontier.append(near)
        density = torch.cat(kept_density)
        return torch.cat(kept_points), torch.log_softmax(density, 0), sums.moments()

    def column_scales(self, log_scale: torch.Tensor) -> torch.Tensor:
        """Each column's prior scale for log scales ``(B, S)``: ``(B, M)``, 1 where unscaled."""
        ones = log_scale.new_zeros(len(log_scale), 1)
        return torch.cat([log_scale[:, : self.n_prior_scales], ones], 1)[:, self.column_scale].exp()

    @cached_property
    def _unspread(self) -> torch.Tensor:
        """``C^{1/2} (C + J)^{-1/2}``, ``C`` the lattice's covariance of the log scales and
        ``J = h^2 / 12 R R^T`` the cells' uniform spread: it maps scales spread over the
        cells back to covariance ``C`` about their mean."""
        covariance = self.moments.log_scale_covariance
        spread = self.step**2 / 12 * self.whitening @ self.whitening.T
        return _matrix_power(covariance, 0.5) @ _matrix_power(covariance + spread, -0.5)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws of ``(theta (n, M), log s (n, S))``: a lattice point by its weight, the
        log scales uniform over its cell and shrunk to the lattice's covariance about their
        mean (``_unspread``), ``theta`` from the Gaussian given those scales."""
        which = torch.multinomial(self.log_weight.exp(), n, replacement=True, generator=generator)
        cell = torch.rand(n, self.n_scales, generator=generator, dtype=torch.float64) - 0.5
        spread = self.points[which] + (cell * self.step) @ self.whitening.T
        mean = self.moments.log_scale_mean
        log_scale = mean + (spread - mean) @ self._unspread.T
        noise = torch.randn(n, self.moment.shape[0], generator=generator, dtype=torch.float64)
        theta = torch.empty_like(noise)
        for rows in torch.split(torch.arange(n), self._chunk):
            theta[rows] = self._conditionals(log_scale[rows])[1].draw(noise[rows])
        return theta, log_scale


def _matrix_power(matrix: torch.Tensor, power: float) -> torch.Tensor:
    """``A^p`` of a symmetric positive definite ``A`` by its eigendecomposition."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.pow(power)) @ eigenvectors.T


def _factor_blocks(precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cholesky factors, inverses and failure flags of many tiny blocks ``(B, L, q, q)``: one
    inverse and products beat a triangular solve per right-hand side; ``q = 1`` (a varying
    intercept) is a square root and a reciprocal, ``q = 2`` the 2 x 2 formulas (LAPACK's
    per-matrix overhead dominates such blocks)."""
    if precision.shape[-1] == 1:
        return precision.sqrt(), precision.reciprocal(), (precision <= 0)[..., 0, 0].int()
    if precision.shape[-1] == 2:  # a varying intercept and slope: the 2 x 2 formulas
        a, b, c = precision[..., 0, 0], precision[..., 1, 0], precision[..., 1, 1]
        first = a.sqrt()
        below = b / first
        second = (c - below.square()).sqrt()
        zero = torch.zeros_like(a)
        chol = torch.stack([torch.stack([first, zero], -1), torch.stack([below, second], -1)], -2)
        inverse = torch.stack([torch.stack([c, -b], -1), torch.stack([-b, a], -1)], -2)
        failed = ~((a > 0) & (second > 0))
        return chol, inverse / (a * c - b * b)[..., None, None], failed.int()
    chol, failed = torch.linalg.cholesky_ex(precision)
    return chol, torch.cholesky_inverse(chol), failed


def _select(conditional: _Conditional, keep: torch.Tensor) -> _Conditional:
    return _Conditional(*(getattr(conditional, f.name)[keep] for f in fields(conditional)))


class _MomentSums:
    """Running weighted sums of the conditionals' moments over lattice points, the weights
    ``exp(log p - log p(mode))`` (at most about 1)."""

    def __init__(self, size: int, n_joint: int, n_scales: int) -> None:
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
        self.n_joint = n_joint
        self.total = zeros(())
        self.joint, self.joint_outer = zeros(n_joint), zeros(n_joint, n_joint)
        self.theta, self.theta_square = zeros(size), zeros(size)
        self.scaled, self.scaled_square = zeros(size), zeros(size)
        self.log_scale, self.log_scale_outer = zeros(n_scales), zeros(n_scales, n_scales)
        self.scale, self.scale_square = zeros(n_scales), zeros(n_scales)

    def add(self, log_scale: torch.Tensor, log_weight: torch.Tensor, conditional: _Conditional,
            column_scale: torch.Tensor) -> None:
        w = log_weight.exp()
        mean, joint = conditional.mean, conditional.mean[:, : self.n_joint]
        covariance = conditional.joint_covariance(self.n_joint)
        self.total += w.sum()
        self.joint += w @ joint
        self.joint_outer += torch.einsum("b,bij->ij", w,
                                         covariance + joint[:, :, None] * joint[:, None, :])
        second = conditional.variance() + mean.square()
        self.theta += w @ mean
        self.theta_square += w @ second
        self.scaled += w @ (mean / column_scale)
        self.scaled_square += w @ (second / column_scale.square())
        self.log_scale += w @ log_scale
        self.log_scale_outer += (w[:, None] * log_scale).T @ log_scale
        self.scale += w @ log_scale.exp()
        self.scale_square += w @ log_scale.mul(2).exp()

    def moments(self) -> GridMoments:
        joint = self.joint / self.total
        theta, scaled = self.theta / self.total, self.scaled / self.total
        log_scale, scale = self.log_scale / self.total, self.scale / self.total
        return GridMoments(
            joint, self.joint_outer / self.total - joint[:, None] * joint,
            theta, self.theta_square / self.total - theta.square(),
            scaled, self.scaled_square / self.total - scaled.square(),
            log_scale, self.log_scale_outer / self.total - log_scale[:, None] * log_scale,
            scale, self.scale_square / self.total - scale.square(),
        )
