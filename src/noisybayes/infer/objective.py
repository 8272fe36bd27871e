"""The objective: the evidence lower bound of a model under a Gaussian family.

    ELBO(q) = (N/B) sum_{i in batch} E_q[log p(y_i | x_i, theta)] + E_q[log p(theta)] + H[q]

with ``theta`` the flat unconstrained vector (the prior term includes ``log|det J|`` of the
constraining transform). ``E_q[log p(theta)]`` is taken in closed form for unconstrained
blocks whose prior has a registered ``kl_divergence`` from a Normal (then
``E_q[log p] = -KL(q_k || p_k) - H[q_k]``), and by Monte Carlo otherwise. Draws are
evaluated in one batched pass with ``torch.func.vmap`` over ``functional_call``.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.distributions import Distribution, Normal, kl_divergence
from torch.func import functional_call, vmap

from noisybayes.errors import ModelError
from noisybayes.math.families import Draws, GaussianFamily
from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model

__all__ = ["Data", "LogJoint", "batched_evaluation", "elbo_estimate", "gradient_of",
           "summed_log_prob"]

Data = tuple[tuple[torch.Tensor, ...], torch.Tensor]
# Log-likelihoods are summed over rows in float64 whatever the data's dtype: a float32 sum
# over 10^5 rows cannot resolve the ELBO changes a line search near the optimum compares.
_SUM_DTYPE = torch.float64
# Rows per float64 partial sum: converting a chunk that stays in cache costs a third of
# converting all rows of every draw at once (above 32 MB each call maps fresh pages).
_SUM_ROWS = 4096
_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def gradient_of(value: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``d value / d u`` by autograd, zero where ``value`` does not depend on ``u`` (a flat
    prior)."""
    if not value.requires_grad:
        return torch.zeros_like(u)
    (gradient,) = torch.autograd.grad(value, u, allow_unused=True)
    return torch.zeros_like(u) if gradient is None else gradient


def _float64_sum(terms: torch.Tensor) -> torch.Tensor:
    """``sum(terms)`` in float64, ``_SUM_ROWS`` rows (the first dimension) at a time (one
    number, e.g. a joint density over all rows, is its own sum)."""
    if terms.dtype == _SUM_DTYPE or terms.dim() == 0 or terms.shape[0] <= _SUM_ROWS:
        return terms.sum(dtype=_SUM_DTYPE)
    return torch.stack([chunk.sum(dtype=_SUM_DTYPE) for chunk in terms.split(_SUM_ROWS)]).sum()


def _sum_in_float64(terms: torch.Tensor) -> torch.Tensor:
    """``sum(terms)`` in float64, its gradient in ``terms``' dtype: the gradient of a sum is
    the same for every term, so float64 gains it nothing, while ``sum(dtype=float64)``'s own
    backward pass would make a float64 copy of every row's gradient and convert it back."""
    if not terms.requires_grad or terms.dtype == _SUM_DTYPE:  # one pass does
        return _float64_sum(terms)
    low = terms.sum().to(_SUM_DTYPE)
    correction = _float64_sum(terms.detach()) - low
    # an infinite sum (a row's log-density -inf) keeps its value: inf - inf is no correction
    return low + torch.where(torch.isfinite(low), correction, 0.0).detach()


def summed_log_prob(likelihood: Distribution, y: torch.Tensor) -> torch.Tensor:
    """``sum_i log p(y_i)`` in float64. A ``Normal`` whose scale is one value for every row
    (broadcast: stride 0 along every dimension) sums ``-sum_i (y_i - mu_i)^2 / (2 sigma^2) - n log(sigma sqrt(2 pi))``:
    two passes over the rows instead of ``Normal.log_prob``'s eight (it squares and logs the
    broadcast scale row by row); the same value to rounding."""
    if type(likelihood) is Normal and likelihood.loc.shape == y.shape and y.numel():
        scale = likelihood.scale
        if all(stride == 0 or size == 1 for stride, size in zip(scale.stride(), scale.shape,
                                                                 strict=True)):
            sigma = scale.reshape(-1)[0].to(_SUM_DTYPE)
            residual = y - likelihood.loc
            squares = _sum_in_float64(residual * residual)
            return -0.5 * squares / sigma**2 - y.numel() * (sigma.log() + _HALF_LOG_TWO_PI)
    return _sum_in_float64(likelihood.log_prob(y))


class _ValidationPause:
    """Turns ``torch.distributions``' default argument validation off while at least one
    batched evaluation is running, in any thread, and restores it exactly once.

    The first ``enter`` records the default and switches it off; the last ``exit`` puts the
    recorded value back. Entries and exits are counted under a lock, so nested and concurrent
    evaluations neither restore too early nor leave the default changed. The same applies to
    one ``warnings`` filter: ``warnings.catch_warnings`` swaps the process-wide filter list
    and is not safe under threads, so the filter is inserted once and removed once instead.
    """

    _message = "There is a performance drop"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = Distribution._validate_args
        self._filter: tuple | None = None

    @property
    def depth(self) -> int:
        """How many evaluations are running now."""
        return self._depth

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = Distribution._validate_args
                Distribution.set_default_validate_args(False)
                warnings.filterwarnings("ignore", message=self._message)
                self._filter = warnings.filters[0]
            self._depth += 1

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                Distribution.set_default_validate_args(self._saved)
                filters = warnings.filters  # a list, whatever the stubs say
                if isinstance(filters, list):
                    for i, entry in enumerate(filters):
                        if entry is self._filter:
                            del filters[i]
                            break
                self._filter = None


_pause = _ValidationPause()


@contextmanager
def batched_evaluation() -> Iterator[None]:
    """For evaluating user models under ``vmap`` and in the mode search: switch off
    ``torch.distributions``' default argument checks and silence vmap's notices that an
    operator runs through its slower fallback (a missing batching rule is torch's to add,
    not the user's to act on).

    The checks are off because a draw from the tails of ``q`` may push a parameter out of
    its support in floating point (``exp(-110.0)`` is ``0.0`` in float32, an invalid Normal
    scale): that draw should give a log density of ``-inf`` or ``nan``, which the fit and
    the diagnostics handle, not an exception for the whole batch of draws.

    Torch keeps the default in one process-wide class attribute. While any thread is inside
    this block, every thread sees it off: a distribution built elsewhere in the process
    without an explicit ``validate_args`` is not checked meanwhile. When the last of the
    nested or concurrent blocks exits, normally or by an exception, the default that held
    before the first one entered is put back (a change made by another thread in between
    is overwritten). Pass ``validate_args=True`` to a distribution to keep it checked
    regardless.
    """
    _pause.enter()
    try:
        yield
    finally:
        _pause.exit()


class LogJoint:
    """``log p(y_batch | x_batch, theta) * scale + log p(theta) + log|det J|`` per draw."""

    def __init__(self, model: Model, layout: ParamLayout) -> None:
        self.model = model
        self.layout = layout
        self.closed_form = frozenset(n for n in layout.names if self._has_closed_form(n))

    def _has_closed_form(self, name: str) -> bool:
        spec = self.layout.specs[name]
        if spec.prior is None or spec.prior.event_shape or not self.layout.is_identity(name):
            return False
        probe = Normal(torch.zeros(spec.shape), torch.ones(spec.shape))
        try:
            kl_divergence(probe, spec.prior)
        except NotImplementedError:
            return False
        return True

    def likelihood(self, values: dict[str, torch.Tensor], xs: tuple[torch.Tensor, ...]):
        """The model's distribution of ``y`` at one set of parameter values; an exception
        from ``forward`` comes back as a :class:`~noisybayes.errors.ModelError` naming the
        inputs' shapes, with the original chained."""
        try:
            return functional_call(self.model, values, xs)
        except Exception as error:
            shapes = ", ".join(str(tuple(x.shape)) for x in xs)
            params = ", ".join(f"{k} {tuple(v.shape)}" for k, v in values.items())
            raise ModelError(
                f"{type(self.model).__name__}.forward raised {type(error).__name__} on inputs "
                f"of shape {shapes} (parameters: {params}): {error}"
            ) from error

    def single(
        self,
        u: torch.Tensor,
        xs: tuple[torch.Tensor, ...],
        y: torch.Tensor,
        scale: float,
        skip_prior: frozenset[str] = frozenset(),
    ) -> torch.Tensor:
        """The log joint at one vector ``u`` (``(P,)``); priors in ``skip_prior`` left out."""
        values, log_det = self.layout.constrain(u)
        log_lik = summed_log_prob(self.likelihood(values, xs), y)
        return scale * log_lik + self.layout.log_prior(values, skip_prior) + log_det

    def log_prior(self, u: torch.Tensor) -> torch.Tensor:
        """``log p(u)``: the priors and the log-Jacobian at one vector ``u``."""
        values, log_det = self.layout.constrain(u)
        return self.layout.log_prior(values) + log_det

    def log_lik(self, u: torch.Tensor, xs: tuple[torch.Tensor, ...], y: torch.Tensor):
        """``sum_i log p(y_i | x_i, u)`` at one vector ``u``."""
        values, _ = self.layout.constrain(u)
        return summed_log_prob(self.likelihood(values, xs), y)

    def batched(
        self,
        theta: torch.Tensor,
        xs: tuple[torch.Tensor, ...],
        y: torch.Tensor,
        scale: float,
        skip_prior: frozenset[str] = frozenset(),
    ) -> torch.Tensor:
        """The log joint for each row of ``theta`` (``(S, P)``), in one vmapped pass."""
        with batched_evaluation():
            return vmap(self.single, in_dims=(0, None, None, None, None))(
                theta, xs, y, scale, skip_prior
            )

    def closed_form_log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """``log p_k(theta_k)`` summed over the ``closed_form`` blocks, for each row of
        ``theta`` (``(S, P)``): what :meth:`batched` leaves out when told to skip them."""
        skip = frozenset(self.layout.names) - self.closed_form
        return vmap(lambda u: self.layout.log_prior(self.layout.constrain(u)[0], skip))(theta)

    def log_lik_grad(self, u: torch.Tensor, xs: tuple[torch.Tensor, ...], y: torch.Tensor):
        """``grad_u sum_i log p(y_i | x_i, u)`` at one vector ``u``; plain autograd, as
        ``torch.func.grad``'s first call imports ``torch._dynamo`` (seconds)."""
        u = u.detach().requires_grad_(True)
        with torch.enable_grad(), batched_evaluation():
            return gradient_of(self.log_lik(u, xs, y), u)

    def expected_log_prior(self, family: GaussianFamily) -> torch.Tensor:
        """``E_q[log p_k(theta_k)]`` summed over the closed-form blocks."""
        mean, sd = family.mean(), family.variance().sqrt()
        total = mean.new_zeros(())
        for block in self.layout.blocks:
            prior = block.spec.prior
            if block.name not in self.closed_form or prior is None:
                continue
            shape = block.spec.shape
            q = Normal(
                mean[block.start : block.stop].reshape(shape),
                sd[block.start : block.stop].reshape(shape),
            )
            total = total - (kl_divergence(q, prior) + q.entropy()).sum()
        return total


def elbo_estimate(
    log_joint: LogJoint,
    family: GaussianFamily,
    batch: Data,
    n_data: int,
    n_samples: int,
    generator: torch.Generator | None,
    anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
    curvature: torch.Tensor | None = None,
    draws: Draws | None = None,
) -> torch.Tensor:
    """An unbiased, differentiable estimate of the full-data ELBO from one minibatch.

    The entropy is exact. ``draws`` (e.g. ``family.from_noise(noise)`` for fixed noise),
    when given, are the draws instead of fresh antithetic ones from ``generator``; the
    caller can then differentiate with respect to their ``z``.
    ``anchor = (u0, g0)``, with ``g0`` the full-data log-likelihood gradient at ``u0``, adds
    the control variate ``<mean_s theta_s, g0 - (N/B) grad log p(y_B | u0)>`` to the gradient
    (its value is left unchanged): zero in expectation over batches, and it cancels most of
    the minibatch noise near ``u0`` (SVRG, Johnson & Zhang 2013).

    ``curvature = A``, the Laplace precision in the family's whitened coordinates ``z``,
    adds the Taylor control variate ``mean_s z_s^T A z_s / 2 - E_q[z^T A z] / 2``: zero in
    expectation, it removes the quadratic part of ``log p`` from the Monte Carlo average, so
    for a near-Gaussian posterior little sampling noise is left in any family (Miller et
    al. 2017).
    """
    xs, y = batch
    scale = n_data / y.shape[0]
    if draws is None:
        draws = family.draw(n_samples, generator=generator, antithetic=True)
    theta, z = draws
    log_p = log_joint.batched(theta, xs, y, scale, log_joint.closed_form)
    if curvature is not None:
        quadratic = 0.5 * ((z @ curvature) * z).sum(-1)
        log_p = log_p + quadratic - family.expected_quadratic(curvature)
    elbo = log_p.mean() + log_joint.expected_log_prior(family) + family.entropy()
    if anchor is not None and scale != 1.0:
        u0, g0 = anchor
        correction = g0 - scale * log_joint.log_lik_grad(u0, xs, y)
        term = theta.mean(0) @ correction
        elbo = elbo + (term - term.detach())
    return elbo
