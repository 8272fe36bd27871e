"""IVON: variational learning with the cost of Adam (Shen et al. 2024, "Variational Learning
is Effective for Large Deep Networks", ICML; Algorithm 1).

The optimizer holds a mean-field Gaussian posterior over the parameters it is given: the
parameters themselves are its means ``m``, and a per-entry Hessian estimate ``h`` sets its
scale. Each step the weights are perturbed by a draw of that posterior (noise injection
inside the optimizer), the loss is differentiated there, and

    sigma = 1 / sqrt(ess * (h + delta))                                 (posterior scale)
    g_hat = grad at m + sigma * eps,   h_hat = g_hat * eps / sigma      (Price's theorem)
    g_bar <- beta1 * g_bar + (1 - beta1) * g_hat
    h     <- beta2 * h + (1 - beta2) * h_hat + (1 - beta2)^2 / 2 * (h - h_hat)^2 / (h + delta)
    m     <- m - alpha * clip((g_bar / (1 - beta1^t) + delta * m) / (h + delta), rho)

with ``delta`` the weight decay, ``rho`` the clip radius and ``alpha = lr * (hess_init +
delta)`` (so the first step is ``lr`` times the gradient, as in SGD), or ``alpha = lr`` with
``rescale_lr=False``. The loss is the
per-datum negative log-likelihood (the mean over a minibatch), and the Gaussian prior
``N(0, 1 / (ess * delta))`` is implied by the weight decay. The functions below state one
equation each, on tensors of one shape and dtype (the optimizer's flat state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from noisybayes._checks import check_bool, check_positive, check_positive_int, is_number

__all__ = [
    "IVON",
    "hessian_estimate",
    "hessian_update",
    "mean_update",
    "momentum_update",
    "posterior_scale",
]


def posterior_scale(hess: torch.Tensor, weight_decay: float | torch.Tensor,
                    ess: float) -> torch.Tensor:
    """``sigma = 1 / sqrt(ess * (h + delta))``, the posterior sd of every entry."""
    return (hess + weight_decay).mul_(ess).rsqrt_()


def hessian_estimate(noise_grad: torch.Tensor, hess: torch.Tensor,
                     weight_decay: float | torch.Tensor, ess: float) -> torch.Tensor:
    """``h_hat = E[g * (theta - m)] * ess * (h + delta)``: Price's theorem, ``E[g eps] / sigma``
    with ``theta - m = sigma * eps`` (``noise_grad`` is the average of ``g * (theta - m)``)."""
    return (hess + weight_decay).mul_(noise_grad).mul_(ess)


def momentum_update(momentum: torch.Tensor, grad: torch.Tensor, beta1: float,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """``g_bar <- beta1 * g_bar + (1 - beta1) * g_hat`` (into ``out`` when given)."""
    return torch.lerp(momentum, grad, 1.0 - beta1, out=out)


def hessian_update(hess: torch.Tensor, hess_hat: torch.Tensor, beta2: float,
                   weight_decay: float | torch.Tensor,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """``h <- beta2 h + (1 - beta2) h_hat + (1 - beta2)^2 / 2 (h - h_hat)^2 / (h + delta)``
    (the last term keeps ``h`` positive: a Riemannian-gradient correction; into ``out`` when
    given, which may be ``hess``)."""
    squared, damping = (hess - hess_hat).square_(), hess + weight_decay
    new = torch.lerp(hess, hess_hat, 1.0 - beta2, out=out)
    return new.addcdiv_(squared, damping, value=0.5 * (1.0 - beta2) ** 2)


def mean_update(loc: torch.Tensor, momentum: torch.Tensor, hess: torch.Tensor, step_size: float,
                weight_decay: float | torch.Tensor, clip_radius: float, debias: float,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """``m <- m - alpha * clip((g_bar / debias + delta * m) / (h + delta), rho)`` (into
    ``out`` when given, which may be ``loc``)."""
    direction = torch.mul(loc, weight_decay).add_(momentum, alpha=1.0 / debias)
    direction.div_(hess + weight_decay).clamp_(-clip_radius, clip_radius)
    return torch.add(loc, direction, alpha=-step_size, out=out)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The entries of ``tensors`` as one new vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _views(vector: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """``vector`` cut into views shaped like each of ``like`` (the inverse of :func:`_flat`)."""
    parts = vector.split([t.numel() for t in like])
    return [part.view_as(t) for part, t in zip(parts, like, strict=True)]


def _shared_settings(group: dict[str, Any]) -> tuple[Any, ...]:
    """What groups stepping as one must agree on: every setting but the weight decay, which
    may differ per entry (with ``rescale_lr`` the step size depends on it and on
    ``hess_init``, so then they must agree too), and their dtype and device."""
    first = group["params"][0]
    rescaled = (group["hess_init"], group["weight_decay"]) if group["rescale_lr"] else ()
    return (first.dtype, first.device, group["lr"], group["ess"], group["beta1"],
            group["beta2"], group["clip_radius"], group["rescale_lr"], *rescaled)


class _Buffers:
    """The posterior state of consecutive parameter groups that agree on their settings but
    the weight decay (:func:`_shared_settings`, e.g. a network and its likelihood's noise
    scale) as flat vectors, so that a step is a few operations for all of them instead of
    per group or per tensor. The optimizer's per-parameter state entries
    (``state[p]["hess"]``, ...) are rebound to views of these vectors; ``loc`` and ``noise``
    hold the means and the draw's offset while a draw is in place (``loc`` the means also
    while :meth:`IVON.step` computes the new ones). ``weight_decay`` is the groups' one
    value, or a vector of every entry's when they differ."""

    KEYS = ("momentum", "hess", "grad_sum", "noise_grad_sum")

    def __init__(self, groups: list[dict[str, Any]], state: dict) -> None:
        self.groups = groups
        self.params = params = [p for group in groups for p in group["params"]]
        self.flat: dict[str, torch.Tensor] = {}
        self.views: dict[str, list[torch.Tensor]] = {}
        for key in self.KEYS:
            self.flat[key] = _flat([state[p][key] for p in params])
            self.views[key] = _views(self.flat[key], params)
            for p, view in zip(params, self.views[key], strict=True):
                state[p][key] = view
        self.loc, self.noise = torch.empty_like(self.flat["hess"]), torch.empty_like(self.flat["hess"])
        self.loc_views, self.noise_views = _views(self.loc, params), _views(self.noise, params)
        self.sizes = [sum(p.numel() for p in group["params"]) for group in groups]
        self.decays = [group["weight_decay"] for group in groups]
        self.weight_decay: float | torch.Tensor = self.decays[0]
        if len(set(self.decays)) > 1:
            self.weight_decay = torch.cat([
                torch.full((size,), decay, dtype=params[0].dtype, device=params[0].device)
                for size, decay in zip(self.sizes, self.decays, strict=True)])

    @property
    def group(self) -> dict[str, Any]:
        """The first group, whose settings but the weight decay are every group's."""
        return self.groups[0]

    def stale(self) -> bool:
        """Whether the groups' settings have changed apart since these buffers were made."""
        shared = _shared_settings(self.groups[0])
        return ([group["weight_decay"] for group in self.groups] != self.decays
                or any(_shared_settings(group) != shared for group in self.groups[1:]))


def _check_unit(name: str, value: float) -> float:
    if not is_number(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _check_non_negative(name: str, value: float) -> float:
    if not is_number(value) or not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return float(value)


def _check_radius(value: float) -> float:
    if not is_number(value) or not value > 0.0:
        raise ValueError(f"clip_radius must be > 0 (inf: no clipping), got {value!r}")
    return float(value)


class IVON(torch.optim.Optimizer):
    """Improved Variational Online Newton: Adam-like state and steps, a Gaussian posterior as the
    result.

    The posterior of every parameter entry is ``N(m, 1 / (ess * (h + weight_decay)))``, ``m``
    the parameter's value. Train with the perturbation inside the block::

        for xb, yb in loader:
            for _ in range(n_draws):
                with opt.sampled_params(train=True):
                    loss = nll(model(xb), yb).mean()     # per-datum NLL, no prior term
                    loss.backward()
            opt.step()

    ``ess`` is the effective sample size, normally the training set size ``N``: the loss is
    a per-datum average and ``ess`` scales it back to the whole data's likelihood. The
    weight decay is the prior: ``weight_decay = prior precision / ess``, an isotropic
    Gaussian prior ``N(0, 1 / (ess * weight_decay))`` (sd ``1 / sqrt(ess * weight_decay)``).

    Args:
        params: the parameters (or parameter groups) of the model, the posterior means.
        lr: the learning rate ``> 0``; the mean moves by ``alpha * (g_bar + weight_decay *
            m) / (h + weight_decay)``, ``alpha = lr * (hess_init + weight_decay)`` (``alpha =
            lr`` with ``rescale_lr=False``).
        ess: the effective sample size ``> 0``.
        hess_init: the initial Hessian estimate ``h > 0`` (the initial posterior sd is
            ``1 / sqrt(ess * (hess_init + weight_decay))``).
        beta1: the gradient's exponential moving average factor, in ``[0, 1)``.
        beta2: the Hessian's, in ``[0, 1)``.
        weight_decay: ``delta >= 0``, the prior precision divided by ``ess``.
        clip_radius: ``rho > 0``, the elementwise clip of the preconditioned step.
        mc_samples: draws per :meth:`step` when it is given a closure.
        rescale_lr: ``False`` takes ``alpha = lr``: the step then does not shrink with
            ``hess_init`` (as the reference implementation's option of that name); a group
            setting, saved with the others.
        generator: the only source of the weight noise (a new one, seeded from the
            operating system, when ``None``); noise is drawn on its device.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        ess: float,
        hess_init: float = 1.0,
        beta1: float = 0.9,
        beta2: float = 0.99999,
        weight_decay: float = 1e-4,
        clip_radius: float = math.inf,
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
        rescale_lr: bool = True,
    ) -> None:
        defaults = dict(
            lr=check_positive("lr", lr),
            ess=check_positive("ess", ess),
            hess_init=check_positive("hess_init", hess_init),
            beta1=_check_unit("beta1", beta1),
            beta2=_check_unit("beta2", beta2),
            weight_decay=_check_non_negative("weight_decay", weight_decay),
            clip_radius=_check_radius(clip_radius),
            rescale_lr=check_bool("rescale_lr", rescale_lr),
        )
        super().__init__(params, defaults)
        self.mc_samples = check_positive_int("mc_samples", mc_samples)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
        if generator is None:
            generator = torch.Generator(self._params()[0].device if self._params() else "cpu")
            generator.seed()
        self.generator = generator
        self._sampling = False

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as ``torch.optim.Optimizer`` does) and start its posterior state:
        zero momentum and ``h = hess_init``."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        kinds = {(p.dtype, p.device) for p in group["params"]}
        if len(kinds) > 1:
            raise ValueError(f"params of one group must share dtype and device, got {kinds}")
        for p in group["params"]:
            self.state[p].update(
                step=0,
                momentum=torch.zeros_like(p),
                hess=torch.full_like(p, group["hess_init"]),
                n_draws=0,
                grad_sum=torch.zeros_like(p),
                noise_grad_sum=torch.zeros_like(p),
            )
        self._rebuild_buffers()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer``'s, after checking that ``state_dict`` is an IVON state
        of these parameters (every group's settings; every entry's posterior state shaped
        like its parameter), so that a mismatch changes nothing; the flat buffers are built
        from copies of the loaded state (which may be another optimizer's tensors)."""
        groups = state_dict.get("param_groups", [])
        ours = [p for group in self.param_groups for p in group["params"]]
        for group in groups:
            missing = sorted(set(self.defaults) - set(group))
            if missing:
                raise ValueError(f"state_dict must be an IVON optimizer's, got param groups "
                                 f"without {', '.join(missing)}")
        saved = [i for group in groups for i in group["params"]]
        for index, param in zip(saved, ours, strict=False):
            entry = state_dict.get("state", {}).get(index, {})
            for key in _Buffers.KEYS:
                value = entry.get(key)
                if not isinstance(value, torch.Tensor) or value.shape != param.shape:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else value
                    raise ValueError(
                        f"state_dict must hold the state of these parameters, got {key} "
                        f"{shape} for parameter {index}, shaped {tuple(param.shape)}")
        super().load_state_dict(state_dict)
        self._rebuild_buffers()

    def __getstate__(self) -> dict[str, Any]:
        """``torch.optim.Optimizer``'s state (defaults, per-parameter state, groups) with the
        draw count and the generator, so that a copy or an unpickled optimizer draws on."""
        return {**super().__getstate__(), "mc_samples": self.mc_samples,
                "generator": self.generator}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._sampling = False
        self._rebuild_buffers()

    def _rebuild_buffers(self) -> None:
        """The :class:`_Buffers` of every run of consecutive non-empty groups that share their
        settings, from the per-parameter state (as ordinary tensors, also when called under
        ``torch.inference_mode``)."""
        runs: list[list[dict[str, Any]]] = []
        previous = None
        for group in self.param_groups:
            if not group["params"]:
                continue
            first = self.state[group["params"][0]]  # and the same steps and draws so far
            key = (_shared_settings(group), first["step"], first["n_draws"])
            if key == previous:
                runs[-1].append(group)
            else:
                runs.append([group])
            previous = key
        with torch.inference_mode(False), torch.no_grad():
            self._all_buffers = [_Buffers(run, self.state) for run in runs]

    def _buffers(self) -> list[_Buffers]:
        """Every run of groups' buffers, made anew when a group's settings have changed."""
        if any(buffers.stale() for buffers in self._all_buffers):
            self._rebuild_buffers()
        return self._all_buffers

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def posterior_scale(self, param: torch.Tensor) -> torch.Tensor:
        """The posterior sd of every entry of ``param`` (one of the optimizer's parameters),
        ``1 / sqrt(ess * (h + weight_decay))``, shaped like it."""
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                return posterior_scale(self.state[param]["hess"], group["weight_decay"],
                                       group["ess"])
        raise ValueError("param must be one of the optimizer's parameters, got another tensor")

    def _draw_noise(self) -> Iterator[_Buffers]:
        """Each run of groups' buffers with ``noise = sigma * eps`` drawn: one standard normal
        vector per group (the draws do not depend on how groups are run together)."""
        for buffers in self._buffers():
            eps = torch.empty(buffers.noise.numel(), dtype=buffers.noise.dtype,
                              device=self.generator.device)
            for part in eps.split(buffers.sizes):
                torch.randn(part.shape, generator=self.generator, out=part)
            scale = posterior_scale(buffers.flat["hess"], buffers.weight_decay,
                                    buffers.group["ess"])
            torch.mul(scale, eps.to(buffers.noise.device), out=buffers.noise)
            yield buffers

    @contextmanager
    def sampled_params(self, train: bool = False) -> Iterator[None]:
        """Within the block the parameters are a draw ``m + sigma * eps`` of the posterior;
        the means are restored on leaving, also when the block raises.

        With ``train=True`` the gradients are cleared on entering and, when the block ends
        normally, the gradient at the draw is kept for the next :meth:`step`.
        """
        if self._sampling:
            raise RuntimeError("sampled_params blocks cannot be nested: the parameters are "
                               "already a draw")
        if train:
            for p in self._params():
                p.grad = None
        self._sampling = True
        drawn: list[_Buffers] = []
        try:
            with torch.no_grad():
                for buffers in self._draw_noise():
                    torch._foreach_copy_(buffers.loc_views, buffers.params)
                    drawn.append(buffers)
                    torch._foreach_add_(buffers.params, buffers.noise_views)
            yield
        finally:
            with torch.no_grad():
                for buffers in drawn:
                    torch._foreach_copy_(buffers.params, buffers.loc_views)
            self._sampling = False
        if train:
            with torch.no_grad():
                for buffers in drawn:
                    grads = [torch.zeros_like(p) if p.grad is None else p.grad
                             for p in buffers.params]
                    torch._foreach_add_(buffers.views["grad_sum"], grads)
                    torch._foreach_addcmul_(buffers.views["noise_grad_sum"],
                                            buffers.noise_views, grads)
                    for p in buffers.params:
                        self.state[p]["n_draws"] += 1

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """Update means and Hessian from the draws taken since the last step.

        ``closure`` (optional) is called ``mc_samples`` times and must itself run the
        ``sampled_params(train=True)`` block and ``backward``; the mean loss is returned.
        """
        loss = None
        if closure is not None:
            losses = []
            for _ in range(self.mc_samples):
                with torch.enable_grad():
                    losses.append(closure())
            loss = torch.stack(losses).mean()
        for buffers in self._buffers():
            group, states = buffers.group, [self.state[p] for p in buffers.params]
            n = states[0]["n_draws"]
            if n == 0:
                raise RuntimeError(
                    "step() needs at least one gradient taken inside "
                    "`with optimizer.sampled_params(train=True):` since the last step"
                )
            for state in states:
                state["step"] += 1
                state["n_draws"] = 0
            wd, ess, flat = buffers.weight_decay, group["ess"], buffers.flat
            torch._foreach_copy_(buffers.loc_views, buffers.params)
            # the sums become means here (zeroed for the next draws below)
            hess_hat = hessian_estimate(flat["noise_grad_sum"].div_(n), flat["hess"], wd, ess)
            momentum_update(flat["momentum"], flat["grad_sum"].div_(n), group["beta1"],
                            out=flat["momentum"])
            hessian_update(flat["hess"], hess_hat, group["beta2"], wd, out=flat["hess"])
            mean_update(
                buffers.loc, flat["momentum"], flat["hess"],
                step_size=group["lr"] * ((group["hess_init"] + wd) if group["rescale_lr"] else 1),
                weight_decay=wd,
                clip_radius=group["clip_radius"],
                debias=1.0 - group["beta1"] ** states[0]["step"],
                out=buffers.loc,
            )
            torch._foreach_copy_(buffers.params, buffers.loc_views)
            flat["grad_sum"].zero_()
            flat["noise_grad_sum"].zero_()
        return loss
