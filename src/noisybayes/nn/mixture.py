"""``Mixture``: an equal-weight mixture of mean-field posteriors over one architecture.

    q(w) = (1/K) sum_k q_k(w),   each q_k a network of noisy layers from its own start

A network's posterior has many modes; one mean-field Gaussian finds one of them. K
components started from different random initialisations find different ones, and the
mixture's predictive averages over them (the idea of MultiSWAG, Wilson & Izmailov 2020,
with variational components). :func:`noisybayes.nn.train` fits each component to its
own ELBO, all K in one vectorised pass; since the entropy is concave,

    ELBO(q) >= (1/K) sum_k ELBO(q_k),

so the mixture is at least as good a variational posterior as its average component.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Mixture"]


class Mixture(nn.Module):
    """An equal-weight mixture of ``components``, networks of the same architecture.

    ``forward`` gives one posterior draw per row: each row's output comes from a component
    chosen uniformly at random, under that component's own weight noise. Within
    :func:`noisybayes.nn.posterior_mean` it is deterministic: the average of the components'
    outputs at their means. Train it with :func:`noisybayes.nn.train`; a mixture has no
    closed-form KL, so :func:`noisybayes.nn.elbo_loss` refuses it.
    """

    use_mean: bool = False

    def __init__(self, components: Sequence[nn.Module]) -> None:
        super().__init__()
        components = list(components)
        if not components:
            raise ValueError("components must hold at least one network, got none")
        shapes = [{k: v.shape for k, v in c.state_dict().items()} for c in components]
        for k, shape in enumerate(shapes[1:], start=1):
            if shape != shapes[0]:
                raise ValueError(
                    f"components must share one architecture, got component {k} with "
                    f"parameters {shape} against component 0's {shapes[0]}"
                )
        self.components = nn.ModuleList(components)

    def __len__(self) -> int:
        return len(self.components)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One draw of the mixture's output per row of ``x`` ``(B, ...)``."""
        outputs = torch.stack([c(x) for c in self.components])
        if self.use_mean:
            return outputs.mean(0)
        pick = torch.randint(len(self), (x.shape[0],), device=x.device)
        return outputs[pick, torch.arange(x.shape[0], device=x.device)]
