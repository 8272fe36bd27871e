"""Model pieces: uncertain parameters and the models that declare them."""

from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model
from noisybayes.model.param import ParamSpec, param

__all__ = ["Model", "ParamLayout", "ParamSpec", "param"]
