"""Procedures: the objective, the Laplace start, ``fit`` and the ``Posterior``."""

from noisybayes.infer.fit import FitState, fit
from noisybayes.infer.posterior import FitInfo, Posterior
from noisybayes.infer.prediction import Prediction

__all__ = ["FitInfo", "FitState", "Posterior", "Prediction", "fit"]
