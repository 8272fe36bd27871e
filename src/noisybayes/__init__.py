"""noisybayes: correct Bayesian inference by noise injection, as simple as PyTorch regression.

Noise injection on weights (``theta = loc + scale * eps``) plus a proper likelihood plus
the KL term from the prior is variational inference. ``nb.fit`` does it for any
``nb.Model``; ``nb.BayesianLinearRegression`` is the linear model with scikit-learn
conventions.
"""

from noisybayes import data, nn, optim
from noisybayes.errors import DivergenceError, ModelError
from noisybayes.estimators.bnn import BNNClassifier, BNNRegressor
from noisybayes.estimators.glm import BayesianGLM
from noisybayes.estimators.glm_classifier import BayesianGLMClassifier
from noisybayes.estimators.linear import BayesianLinearRegression
from noisybayes.estimators.robust import StudentTLinearRegression
from noisybayes.infer import (
    AutoFamily,
    FitInfo,
    FitState,
    GaussianPosterior,
    Posterior,
    Prediction,
    fit,
)
from noisybayes.infer.calibration import (
    CalibrationReport,
    PredictiveDraws,
    calibration,
    predictive_draws,
)
from noisybayes.infer.diagnostics import CheckReport, compare
from noisybayes.math.conjugate import gaussian_linear_posterior, normal_inverse_gamma_posterior
from noisybayes.model import Model, param
from noisybayes.nn import bayesian, elbo_loss
from noisybayes.tables.data_io import example_path

__version__ = "0.1.0"

__all__ = [
    "AutoFamily",
    "BNNClassifier",
    "BNNRegressor",
    "BayesianGLM",
    "BayesianGLMClassifier",
    "BayesianLinearRegression",
    "CalibrationReport",
    "CheckReport",
    "DivergenceError",
    "FitInfo",
    "FitState",
    "GaussianPosterior",
    "Model",
    "ModelError",
    "Posterior",
    "Prediction",
    "PredictiveDraws",
    "StudentTLinearRegression",
    "bayesian",
    "calibration",
    "compare",
    "data",
    "elbo_loss",
    "example_path",
    "fit",
    "gaussian_linear_posterior",
    "nn",
    "normal_inverse_gamma_posterior",
    "optim",
    "param",
    "plot_calibration",
    "plot_fit",
    "plot_forest",
    "plot_pairs",
    "plot_posterior",
    "plot_predictive",
    "plot_trace",
    "predictive_draws",
]

_PLOTS = tuple(name for name in __all__ if name.startswith("plot_"))


def __getattr__(name: str):
    """The plot functions, imported on first use: matplotlib is an optional dependency."""
    if name in _PLOTS:
        from noisybayes.reports import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'noisybayes' has no attribute {name!r}")
