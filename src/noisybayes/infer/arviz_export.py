"""``post.to_arviz()``: a fitted posterior as an ArviZ ``InferenceData``.

Draws of ``q`` are independent, not a Markov chain, so they are exported as one chain:
ArviZ's r_hat, which compares chains, is then not computed (NaN), and its ess is about the
number of draws, the Monte Carlo error of ``q``'s own averages. Neither says whether ``q``
is close to the posterior; the Pareto k-hat of ``post.check()`` does. ``attrs["draws"]``
records the choice. ``log_likelihood`` holds ``log p(y_i | x_i, theta_s)`` per draw and
observation, which is what ``az.loo`` reads (Vehtari, Gelman & Gabry 2017).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from noisybayes._checks import check_positive_int
from noisybayes._rng import make_generator

if TYPE_CHECKING:
    from arviz import InferenceData

    from noisybayes.infer.posterior import GaussianPosterior

__all__ = ["INDEPENDENT_DRAWS", "OBSERVATION_DIM", "import_arviz", "to_arviz"]

# Elements of y times draws per chunk of rows when evaluating the pointwise log-likelihood.
_CHUNK_ELEMENTS = 1 << 22
INDEPENDENT_DRAWS = (
    "independent draws of the variational approximation, not a Markov chain: r_hat and ess "
    "do not say whether it is close to the posterior; khat (post.check()) does"
)
OBSERVATION_DIM = "obs"


def import_arviz() -> Any:
    """ArviZ, imported without the FutureWarnings it may print on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    return arviz


def _by_chain(values: torch.Tensor, n_chains: int) -> np.ndarray:
    """``(n_chains * n_draws, ...)`` to ``(n_chains, n_draws, ...)`` as a float64 array."""
    return values.detach().double().cpu().numpy().reshape(n_chains, -1, *values.shape[1:])


def to_arviz(
    post: GaussianPosterior,
    x: Any = None,
    y: Any = None,
    *,
    n_chains: int = 1,
    n_draws: int = 1000,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    response: tuple[float, float] = (0.0, 1.0),
    dims: dict[str, list[str]] | None = None,
    coords: dict[str, Any] | None = None,
) -> InferenceData:
    """``InferenceData`` with ``posterior``, ``posterior_predictive``, ``log_likelihood`` and
    ``observed_data`` (variable ``y``, rows along the dimension ``obs``) at the fit's data,
    or at ``x`` and ``y`` if given.

    ``n_chains * n_draws`` independent draws of ``q``, in one chain by default (see the
    module docstring); more chains only split the same draws, and ArviZ then shows an r_hat
    near 1 whatever the quality of ``q``. ``dims`` names a parameter's dimensions and
    ``coords`` their labels, as in ``az.from_dict`` (``dims={"coef": ["feature"]}``,
    ``coords={"feature": ["age", "income"]}``); ArviZ names the others ``<name>_dim_<i>``.

    ``response = (shift, scale)`` reports the model's response ``y`` as ``shift + scale * y``
    (observations and predictive draws) and its densities with the Jacobian, ``log p - log
    scale``: what an estimator fitted to a standardised response passes to answer on the
    user's scale.

    ``attrs`` (of the whole object and of ``posterior``) carry the fit's metadata:
    ``draws`` (that they are independent), ``family``, ``temperature`` (1: the exact
    Bayesian posterior is the target), ``khat`` (when the fit computed one), ``elbo`` (the
    final whole-data ELBO), ``converged`` and ``n_data``.
    """
    az = import_arviz()
    n_chains = check_positive_int("n_chains", n_chains)
    n_draws = check_positive_int("n_draws", n_draws)
    xs, y_tensor = post.fit_data(x, y, caller="to_arviz()")
    shift, scale = response
    gen = make_generator(seed, generator)
    theta = post.sample_unconstrained(n_chains * n_draws, generator=gen)
    values = post.layout.values(theta)
    rows = max(1, _CHUNK_ELEMENTS // (max(1, y_tensor[:1].numel()) * theta.shape[0]))
    log_lik, simulated = [], []
    with torch.no_grad():
        for start in range(0, y_tensor.shape[0], rows):
            part = tuple(t[start : start + rows] for t in xs)
            log_lik.append(post.log_likelihood(theta, part, y_tensor[start : start + rows]))
            simulated.append(post.simulate(theta, part, generator=gen))
    info = post.info
    attrs: dict[str, Any] = {
        "inference_library": "noisybayes",
        "draws": INDEPENDENT_DRAWS,
        "family": info.family,
        "temperature": 1.0,
        "elbo": info.final_elbo,
        "converged": int(info.converged),
        "n_data": info.n_data,
    }
    if info.khat is not None:
        attrs["khat"] = info.khat
    idata = az.from_dict(
        posterior={name: _by_chain(v, n_chains) for name, v in values.items()},
        posterior_predictive={"y": _by_chain(shift + scale * torch.cat(simulated, 1), n_chains)},
        log_likelihood={"y": _by_chain(torch.cat(log_lik, 1) - math.log(scale), n_chains)},
        observed_data={"y": (shift + scale * y_tensor).detach().double().cpu().numpy()},
        dims={"y": [OBSERVATION_DIM], **(dims or {})},
        coords=coords,
        attrs=attrs,
    )
    idata.posterior.attrs.update(attrs)  # also where az.summary and plots look
    return idata
