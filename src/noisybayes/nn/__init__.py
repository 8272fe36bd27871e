"""Bayesian neural networks by noise injection: layers, a converter, the ELBO, prediction.

    net = nb.bayesian(torch.nn.Sequential(...))          # weights become loc + scale * eps
    lik = nb.nn.Gaussian()                                # learned noise scale
    opt = torch.optim.Adam([*net.parameters(), *lik.parameters()])
    loss = nb.elbo_loss(net, xb, yb, likelihood=lik, n_data=N)
    nb.nn.predict(net, x_new, likelihood=lik)             # mean, epistemic/aleatoric sd
    post = nb.nn.train(net, x, y, likelihood=lik, n_epochs=...)  # the library's loop
    post.predict(x_new); post.summary(); post.to_arviz()  # an nb.Posterior, like nb.fit's
    post = nb.nn.IVONPosterior(net, lik, ivon_optimizer)  # a plain net trained by nb.optim.IVON
    post = nb.nn.train_ivon(net, x, y, likelihood=lik, n_epochs=...)  # ... in the library's loop

    nb.bayesian(net, prior=nb.nn.LogUniform())           # variational dropout: learned alpha
    torch.nn.Sequential(..., nb.nn.GaussianDropout(0.2), ...)  # fixed noise: a regulariser

    mix = nb.nn.Mixture([make_net() for _ in range(5)])  # K mean-field posteriors, K modes
    nb.nn.train(mix, x, y, likelihood=lik, n_epochs=...)  # all K in one vmap pass
"""

from noisybayes.nn.base import NoisyModule, posterior_mean
from noisybayes.nn.conv import BayesConv2d
from noisybayes.nn.convert import MeanFieldNoise, bayesian
from noisybayes.nn.ivon_posterior import IVONPosterior
from noisybayes.nn.ivon_train import train_ivon
from noisybayes.nn.likelihoods import (
    Bernoulli,
    Categorical,
    Gaussian,
    HeteroscedasticGaussian,
    HeteroscedasticStudentT,
    Likelihood,
    NoiseCollapseWarning,
    StudentT,
)
from noisybayes.nn.linear import BayesLinear
from noisybayes.nn.mixture import Mixture
from noisybayes.nn.noise import GaussianDropout, GaussianNoise
from noisybayes.nn.objective import elbo_loss, kl_divergence
from noisybayes.nn.posterior import NetworkPosterior, gaussian_weights
from noisybayes.nn.predict import predict
from noisybayes.nn.priors import LogUniform, ScaleMixturePrior, scale_mixture_prior
from noisybayes.nn.train import train
from noisybayes.nn.variational_dropout import VariationalDropoutLinear

__all__ = [
    "BayesConv2d",
    "BayesLinear",
    "Bernoulli",
    "Categorical",
    "Gaussian",
    "GaussianDropout",
    "GaussianNoise",
    "HeteroscedasticGaussian",
    "HeteroscedasticStudentT",
    "IVONPosterior",
    "Likelihood",
    "LogUniform",
    "MeanFieldNoise",
    "NetworkPosterior",
    "Mixture",
    "NoiseCollapseWarning",
    "NoisyModule",
    "ScaleMixturePrior",
    "StudentT",
    "VariationalDropoutLinear",
    "bayesian",
    "elbo_loss",
    "gaussian_weights",
    "kl_divergence",
    "posterior_mean",
    "predict",
    "scale_mixture_prior",
    "train",
    "train_ivon",
]
