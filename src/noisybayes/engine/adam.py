"""The loop's default step: Adam by torch's own update function, without an ``Optimizer``.

``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, ``p -= lr m_hat / (sqrt(v_hat) + eps)``
with bias-corrected ``m_hat``, ``v_hat`` (Kingma & Ba 2015), by torch's fused kernel
(``torch._fused_adam_``, one call per device and dtype, as it requires) where it applies,
else ``torch.optim.adam.adam``. The parameters are grouped once, and the step counts of a
group are entries of one vector, so a step that updates every parameter counts in one
operation (``torch.optim.adam.adam`` adds 1 to each parameter's count and groups its tensors
in Python every step, more than the kernel's own time on a small network). The moments are held
here rather than in a ``torch.optim.Adam`` because constructing the first
``torch.optim.Optimizer`` of a process imports ``torch._dynamo`` (its ``add_param_group``
is wrapped to disable compilation), which takes longer than a small fit
(``benchmarks/RESULTS.md``); the update and the ``state_dict`` format are ``torch.optim.Adam``'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.adam import adam as adam_update

__all__ = ["Adam"]

_BETAS, _EPS = (0.9, 0.999), 1e-8
# the rest of a torch.optim.Adam param group, so that it can load this state and step
_FIXED_SETTINGS = {"weight_decay": 0.0, "amsgrad": False, "maximize": False, "foreach": None,
                   "capturable": False, "differentiable": False, "fused": None,
                   "decoupled_weight_decay": False}


class Adam:
    """Adam over ``params`` with step size ``lr`` and torch's default betas and eps; the
    parts of ``torch.optim.Optimizer`` the loop uses (``param_groups``' ``lr``,
    ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``)."""

    def __init__(self, params: list[torch.Tensor], lr: float) -> None:
        self.params = list(params)
        self.param_groups: list[dict[str, Any]] = [{"lr": lr}]
        self.fused = bool(self.params) and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self.params)
        scalar = torch.float32 if self.fused else torch.get_default_dtype()
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(self.params):  # the fused kernel's groups; one otherwise
            key = (p.device, p.dtype) if self.fused else (torch.device("cpu"), scalar)
            groups.setdefault(key, []).append(i)
        self.groups = [(indices, torch.zeros(len(indices), dtype=scalar, device=device))
                       for (device, _), indices in groups.items()]
        count_of = {i: count for indices, counts in self.groups
                    for i, count in zip(indices, counts.unbind(), strict=True)}
        self.steps = [count_of[i] for i in range(len(self.params))]
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                         for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                            for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (``set_to_none`` is accepted for ``Optimizer``'s signature)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        lr = float(self.param_groups[0]["lr"])
        if self.fused:
            for indices, counts in self.groups:
                have = [i for i in indices if self.params[i].grad is not None]
                if len(have) == len(indices):
                    counts += 1
                elif have:
                    torch._foreach_add_([self.steps[i] for i in have], 1)
                else:
                    continue
                torch._fused_adam_(
                    [self.params[i] for i in have],
                    [self.params[i].grad for i in have],  # type: ignore[misc]
                    [self.exp_avgs[i] for i in have],
                    [self.exp_avg_sqs[i] for i in have],
                    [],
                    [self.steps[i] for i in have],
                    lr=lr, beta1=_BETAS[0], beta2=_BETAS[1], weight_decay=0.0, eps=_EPS,
                    amsgrad=False, maximize=False,
                )
            return
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not have:
            return
        adam_update(
            [self.params[i] for i in have],
            [self.params[i].grad for i in have],  # type: ignore[misc]
            [self.exp_avgs[i] for i in have],
            [self.exp_avg_sqs[i] for i in have],
            [],
            [self.steps[i] for i in have],
            amsgrad=False,
            beta1=_BETAS[0],
            beta2=_BETAS[1],
            lr=lr,
            weight_decay=0.0,
            eps=_EPS,
            maximize=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """The moments and step counts, in ``torch.optim.Adam``'s format."""
        state = {
            i: {"step": self.steps[i], "exp_avg": self.exp_avgs[i],
                "exp_avg_sq": self.exp_avg_sqs[i]}
            for i in range(len(self.params))
        }
        group = {"lr": self.param_groups[0]["lr"], "betas": _BETAS, "eps": _EPS,
                 **_FIXED_SETTINGS, "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (or ``torch.optim.Adam``'s) of the same
        parameters."""
        for i, entry in state_dict["state"].items():
            index = int(i)
            self.steps[index].copy_(torch.as_tensor(entry["step"]))
            self.exp_avgs[index].copy_(entry["exp_avg"])
            self.exp_avg_sqs[index].copy_(entry["exp_avg_sq"])
        self.param_groups[0]["lr"] = state_dict["param_groups"][0]["lr"]
