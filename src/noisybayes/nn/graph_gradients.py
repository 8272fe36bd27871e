"""Gradients of hand-written autograd nodes when a second derivative may follow.

The layers' fused nodes (``LocalReparameterization``, ``SoftplusNormalKL``) write their
gradient out for speed. Under ``create_graph=True`` (grad mode on inside ``backward``) that
gradient must itself be differentiable in the node's inputs, so it is taken instead by
autograd through the plain operations the node replaces, recomputed from its saved inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["fused_nodes_allowed", "plain_gradients"]


def fused_nodes_allowed() -> bool:
    """Whether the fused nodes may run and are worth it: under grad mode (without it no
    gradient is taken, and the plain operations do less: no gradient written, no tensors
    saved) and not inside a ``torch.func`` transform (``vmap``, ``grad``), which needs the
    plain operations."""
    return torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()


def plain_gradients(
    function: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor | None],
    needs: Sequence[bool],
    grad: torch.Tensor,
    *,
    create_graph: bool = True,
) -> tuple[torch.Tensor | None, ...]:
    """``grad``'s vector-Jacobian product with ``function(*inputs)``, with its graph unless
    ``create_graph=False``, for the inputs that ``needs`` marks (``None`` for the others)."""
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need and t is not None]
    with torch.enable_grad():
        out = function(*inputs)
    found = iter(torch.autograd.grad(out, wanted, grad, create_graph=create_graph,
                                     allow_unused=True))
    return tuple(next(found) if need and t is not None else None
                 for t, need in zip(inputs, needs, strict=True))
