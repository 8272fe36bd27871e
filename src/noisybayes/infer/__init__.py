"""Procedures: the objective, the Laplace start, ``fit`` and the ``Posterior``."""

from noisybayes.infer.fit import AutoFamily, FitState, fit
from noisybayes.infer.posterior import FitInfo, GaussianPosterior, Posterior
from noisybayes.infer.prediction import Prediction

__all__ = [
    "AutoFamily",
    "FitInfo",
    "FitState",
    "GaussianPosterior",
    "Posterior",
    "Prediction",
    "fit",
]
