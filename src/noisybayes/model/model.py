"""``nb.Model``: an ``nn.Module`` whose ``forward`` returns the likelihood of ``y``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from noisybayes.model.param import ParamSpec

__all__ = ["Model"]


def _initial(spec: ParamSpec) -> torch.Tensor:
    """The attribute's value before a fit: the image of 0, or zeros while a conditional
    prior's support is not yet known."""
    if spec.transform is None:
        return torch.zeros(spec.shape)
    return spec.transform(torch.zeros(spec.unconstrained_shape))


class Model(nn.Module):
    """A probabilistic regression model written like an ordinary PyTorch module.

    Declare parameters in ``__init__`` with ``self.name = nb.param(prior, ...)`` (a prior
    may read other parameters: ``nb.param(lambda m: Normal(m.mu, m.tau), shape=(J,))``); write
    ``forward(*x)`` for ONE draw of the parameters (read them as ``self.name``) and return
    a ``torch.distributions.Distribution`` over ``y`` whose batch + event shape is
    ``y.shape``. Inference evaluates many draws at once by swapping the values in with
    ``torch.func.functional_call`` under ``vmap``.
    """

    _param_specs: OrderedDict[str, ParamSpec]

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ParamSpec):
            specs = self.__dict__.get("_param_specs")
            if specs is None:
                if "_buffers" not in self.__dict__:
                    raise TypeError(
                        f"{type(self).__name__}.__init__ must call super().__init__() "
                        f"before declaring the parameter {name!r}"
                    )
                specs = OrderedDict()
                object.__setattr__(self, "_param_specs", specs)
            specs[name] = value
            self.register_buffer(name, _initial(value), persistent=False)
            return
        super().__setattr__(name, value)

    @property
    def param_specs(self) -> OrderedDict[str, ParamSpec]:
        """The declared uncertain parameters, in declaration order."""
        return self.__dict__.get("_param_specs", OrderedDict())
