"""Likelihoods ``p(y | f)`` of a network output ``f``, as small modules.

Each maps the model output and the targets to a ``torch.distributions`` object whose
batch shape is the target's, after checking that the two fit together. Learned noise
scales are ``softplus`` of free parameters, learned Student-t degrees of freedom
``2 + exp`` of one (``df > 2``: finite noise variance); both are point-estimated with the
weights (add the likelihood's parameters to the optimizer).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import distributions as td
from torch import nn
from torch.distributions import constraints, transform_to

from noisybayes._checks import is_number
from noisybayes.math.distributions import FiniteVarianceStudentT
from noisybayes.math.families import inverse_softplus

__all__ = [
    "Bernoulli",
    "Categorical",
    "Gaussian",
    "HeteroscedasticGaussian",
    "HeteroscedasticStudentT",
    "Likelihood",
    "MeanColumnGaussian",
    "NoiseCollapseWarning",
    "StudentT",
]


class NoiseCollapseWarning(UserWarning):
    """A stochastic model trained on squared error, whose optimum sends the noise to zero."""


def _scale_parameter(scale: float, learn: bool) -> nn.Parameter | torch.Tensor:
    if not (is_number(scale) and 0 < scale < math.inf):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    free = inverse_softplus(torch.tensor(float(scale)))
    return nn.Parameter(free) if learn else free


def _shape_error(output: torch.Tensor, y: torch.Tensor, wanted: str) -> ValueError:
    return ValueError(
        f"y must match the model output ({wanted}), got y of shape {tuple(y.shape)} "
        f"and output of shape {tuple(output.shape)}"
    )


class Likelihood(nn.Module):
    """Base class: ``distribution(output)`` is ``p(y | f = output)``, batch-shaped like ``y``."""

    task: Literal["regression", "classification"] = "regression"

    def align(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check shapes and values; return ``(output, y)`` ready for :meth:`distribution`."""
        if output.shape == y.shape:
            return output, y
        if output.shape == (*y.shape, 1):
            return output.squeeze(-1), y
        raise _shape_error(output, y, "the same shape, or one trailing column")

    def distribution(self, output: torch.Tensor) -> td.Distribution:
        raise NotImplementedError

    def log_prob(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y_i | f_i)`` summed over all but the first dim: ``(B,)``."""
        output, y = self.align(output, y)
        lp = self.distribution(output).log_prob(y)
        return lp.reshape(lp.shape[0], -1).sum(1) if lp.ndim > 1 else lp


class Gaussian(Likelihood):
    """``y ~ N(f, scale^2)`` with one (homoscedastic) noise scale, learned by default."""

    def __init__(self, scale: float = 1.0, *, learn_scale: bool = True) -> None:
        super().__init__()
        free = _scale_parameter(scale, learn_scale)
        if isinstance(free, nn.Parameter):
            self.scale_free = free
        else:
            self.register_buffer("scale_free", free)

    @property
    def scale(self) -> torch.Tensor:
        """The noise sd, a scalar tensor."""
        return F.softplus(self.scale_free)

    def distribution(self, output: torch.Tensor) -> td.Normal:
        return td.Normal(output, self.scale.to(output.dtype), validate_args=False)


class _DegreesOfFreedom(nn.Module):
    """The ``df`` of Student-t noise: fixed (any ``df > 0``), or learned on ``df > 2``."""

    _LEARNED = transform_to(constraints.greater_than(2.0))
    df_value: torch.Tensor

    def _init_df(self, df: float, learn: bool) -> None:
        if not (is_number(df) and 0 < df < math.inf):
            raise ValueError(f"df must be a finite number > 0, got {df!r}")
        if learn and df <= 2:
            raise ValueError(f"df must be > 2 to be learned (a finite noise variance), got {df!r}")
        self._finite_variance = learn or df > 2
        start = torch.tensor(float(df))
        if learn:
            self.df_free: nn.Parameter | None = nn.Parameter(self._LEARNED.inv(start))
        else:
            self.df_free = None
            self.register_buffer("df_value", start, persistent=False)

    @property
    def df(self) -> torch.Tensor:
        """The degrees of freedom, a scalar tensor."""
        return self.df_value if self.df_free is None else self._LEARNED(self.df_free)

    def _student_t(self, loc: torch.Tensor, scale: torch.Tensor) -> td.StudentT:
        df = self.df.to(loc)
        if self._finite_variance:  # no masking of small df: vmap-friendly, no device sync
            return FiniteVarianceStudentT(df, loc, scale, validate_args=False)
        return td.StudentT(df, loc, scale, validate_args=False)


class StudentT(Gaussian, _DegreesOfFreedom):
    """``y ~ StudentT(df, f, scale)``: heavy-tailed noise with a learned scale; ``df`` fixed,
    or learned with ``learn_df=True`` (then ``df > 2``, starting at ``df``)."""

    def __init__(self, df: float = 4.0, scale: float = 1.0, *, learn_scale: bool = True,
                 learn_df: bool = False) -> None:
        super().__init__(scale, learn_scale=learn_scale)
        self._init_df(df, learn_df)

    def distribution(self, output: torch.Tensor) -> td.StudentT:  # type: ignore[override]
        return self._student_t(output, self.scale.to(output.dtype))


def _two_columns(output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A heteroscedastic network's output ``(*y.shape, 2)`` (mean, raw scale) and ``y``."""
    if output.shape[-1:] == (2,) and output.shape[:-1] == y.shape:
        return output, y
    if y.ndim >= 1 and y.shape[-1:] == (1,) and output.shape == (*y.shape[:-1], 2):
        return output, y.squeeze(-1)
    raise _shape_error(output, y, "output shaped (*y.shape, 2): mean and raw scale")


class MeanColumnGaussian(Gaussian):
    """``y ~ N(f[..., 0], scale^2)``: a heteroscedastic network's mean column under one
    learned noise sd, its scale column unused (``BNNRegressor(method="ivon")``'s mean-first
    start)."""

    def align(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output, y = _two_columns(output, y)
        return output[..., 0], y


class HeteroscedasticGaussian(Likelihood):
    """``y ~ N(f[..., 0], (softplus(f[..., 1]) + min_scale)^2)``: the model outputs 2 columns."""

    def __init__(self, min_scale: float = 1e-4) -> None:
        super().__init__()
        if not (is_number(min_scale) and 0 <= min_scale < math.inf):
            raise ValueError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
        self.min_scale = float(min_scale)

    def align(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _two_columns(output, y)

    def _scale(self, output: torch.Tensor) -> torch.Tensor:
        if output.shape[-1:] != (2,):
            raise ValueError(f"output must end in 2 columns for {type(self).__name__} (mean and "
                             f"raw scale), got shape {tuple(output.shape)}")
        return F.softplus(output[..., 1]) + self.min_scale

    def distribution(self, output: torch.Tensor) -> td.Normal:
        return td.Normal(output[..., 0], self._scale(output), validate_args=False)


class HeteroscedasticStudentT(HeteroscedasticGaussian, _DegreesOfFreedom):
    """``y ~ StudentT(df, f[..., 0], softplus(f[..., 1]) + min_scale)``: a noise scale per
    input and heavy tails; ``df`` fixed, or learned with ``learn_df=True`` (``df > 2``).

    As a likelihood it nests the Gaussian, the Student-t and the heteroscedastic Gaussian
    (a constant scale column, ``df`` to infinity, or both).
    """

    def __init__(self, df: float = 4.0, min_scale: float = 1e-4, *,
                 learn_df: bool = False) -> None:
        super().__init__(min_scale)
        self._init_df(df, learn_df)

    def distribution(self, output: torch.Tensor) -> td.StudentT:  # type: ignore[override]
        return self._student_t(output[..., 0], self._scale(output))


def _check_labels(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    if y.is_floating_point() and not bool((y == y.round()).all()):
        bad = y[y != y.round()][0].item()
        raise ValueError(f"y must hold integer class labels, got {bad!r}")
    outside = (y < 0) | (y >= n_classes)
    if bool(outside.any()):
        index = tuple(int(i) for i in outside.nonzero()[0])
        raise ValueError(f"y must hold class labels in [0, {n_classes}), got "
                         f"{y[index].item()!r} at index {index}")
    return y.long()


class Categorical(Likelihood):
    """``y ~ Categorical(softmax(f))``: logits ``(B, K)``, labels ``(B,)`` in ``[0, K)``."""

    task = "classification"

    def align(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if output.shape[:-1] != y.shape or output.ndim < 2:
            raise _shape_error(output, y, "logits shaped (*y.shape, n_classes)")
        return output, _check_labels(y, output.shape[-1])

    def distribution(self, output: torch.Tensor) -> td.Categorical:
        return td.Categorical(logits=output, validate_args=False)


class Bernoulli(Likelihood):
    """``y ~ Bernoulli(sigmoid(f))``: one logit per target, labels in ``{0, 1}``."""

    task = "classification"

    def align(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output, y = super().align(output, y)
        return output, _check_labels(y, 2).to(output.dtype)

    def distribution(self, output: torch.Tensor) -> td.Bernoulli:
        return td.Bernoulli(logits=output, validate_args=False)
