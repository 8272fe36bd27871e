"""noisybayes: correct Bayesian inference by noise injection, as simple as PyTorch regression.

Noise injection on weights (``theta = loc + scale * eps``) plus a proper likelihood plus
the KL term from the prior is variational inference. ``nb.fit`` does it for any
``nb.Model``; ``nb.BayesianLinearRegression`` is the linear model with scikit-learn
conventions.
"""

from noisybayes.errors import DivergenceError
from noisybayes.estimators.linear import BayesianLinearRegression
from noisybayes.infer import FitInfo, FitState, Posterior, Prediction, fit
from noisybayes.math.conjugate import gaussian_linear_posterior, normal_inverse_gamma_posterior
from noisybayes.model import Model, param

__version__ = "0.1.0"

__all__ = [
    "BayesianLinearRegression",
    "DivergenceError",
    "FitInfo",
    "FitState",
    "Model",
    "Posterior",
    "Prediction",
    "fit",
    "gaussian_linear_posterior",
    "normal_inverse_gamma_posterior",
    "param",
]
