"""Mathematics: Gaussian variational families, conjugate posteriors, interval helpers."""

from noisybayes.math.conjugate import (
    NormalInverseGammaPosterior,
    NormalPosterior,
    gaussian_linear_posterior,
    normal_inverse_gamma_posterior,
)
from noisybayes.math.families import FAMILIES, FullRank, GaussianFamily, LowRank, MeanField
from noisybayes.math.intervals import hdi

__all__ = [
    "FAMILIES",
    "FullRank",
    "GaussianFamily",
    "NormalPosterior",
    "LowRank",
    "MeanField",
    "NormalInverseGammaPosterior",
    "gaussian_linear_posterior",
    "hdi",
    "normal_inverse_gamma_posterior",
]
