"""``Posterior``: what every fit returns: draws, summaries and the posterior predictive."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch.func import vmap

from noisybayes._checks import check_bool, check_positive_int, check_probability
from noisybayes._rng import make_generator, seeded_from
from noisybayes.infer.data import as_data, as_inputs
from noisybayes.infer.objective import Data, LogJoint, batched_evaluation
from noisybayes.infer.prediction import Prediction
from noisybayes.infer.reweighting import ImportanceDraws
from noisybayes.math.families import GaussianFamily
from noisybayes.math.intervals import hdi
from noisybayes.model.layout import ParamLayout
from noisybayes.model.model import Model

if TYPE_CHECKING:
    from arviz import InferenceData

    from noisybayes.infer.diagnostics import CheckReport

__all__ = ["FitInfo", "GaussianPosterior", "Posterior"]

_SUMMARY_DRAWS = 10_000


@dataclass(frozen=True)
class FitInfo:
    """How a fit went, for every route (``nb.fit``, ``nb.nn.train``, the estimators).

    ``loss_trace`` holds the per-datum loss, ``-ELBO / N`` estimated from the minibatch, of
    every step (the one sign convention of the library: lower is better); ``reason`` says
    why the fit stopped and ``converged`` whether that was by the convergence test (a fixed
    number of steps is not). ``n_epochs`` counts passes over the data, ``temperature`` is
    the KL weight (1: the posterior), ``solver`` the optimiser (``"adam"``: stochastic steps;
    ``"lbfgs"``: the ELBO on fixed draws, ``loss_trace`` then holds each improvement;
    ``"exact"``: a closed form, no optimiser).
    ``family_reason`` says why ``family`` was used (requested, or chosen by
    ``family="auto"``), ``khat`` the Pareto k-hat the fit computed (``None`` if it did
    not) from ``khat_draws`` draws, and ``laplace_precision`` is the curvature ``H = -grad^2 log p(u*, y)`` at the
    mode in the unconstrained coordinates (``(P, P)``; ``None`` without a Laplace start).
    """

    family: str
    n_steps: int
    converged: bool
    reason: str
    loss_trace: torch.Tensor
    n_data: int
    batch_size: int
    n_samples: int
    seconds: float
    laplace_converged: bool = False
    laplace_positive_definite: bool = False
    recoveries: int = 0
    family_reason: str = ""
    khat: float | None = None
    khat_draws: int = 0
    laplace_precision: torch.Tensor | None = field(default=None, repr=False)
    n_epochs: float = 0.0
    temperature: float = 1.0
    solver: str = "adam"

    @property
    def final_elbo(self) -> float:
        """The whole-data ELBO: minus the mean per-datum loss of the last 100 steps (the
        last value for the deterministic ``solver="lbfgs"``), times ``n_data`` (NaN when no
        step was taken)."""
        tail = self.loss_trace[-1:] if self.solver == "lbfgs" else self.loss_trace[-100:]
        return -float(tail.double().mean()) * self.n_data if tail.numel() else float("nan")

    @classmethod
    def closed_form(cls, n_data: int) -> FitInfo:
        """The info of an exact posterior: no optimisation took place."""
        return cls(family="exact", n_steps=0, converged=True, reason="closed form",
                   loss_trace=torch.zeros(0), n_data=n_data, batch_size=n_data, n_samples=0,
                   seconds=0.0, laplace_converged=True, laplace_positive_definite=True,
                   solver="exact")


class Posterior(ABC):
    """What every fit returns: draws, summaries, the posterior predictive, checks, export.

    ``nb.fit`` and the regression estimators give a :class:`GaussianPosterior`, networks
    (``nb.nn.train``, the network estimators) a ``noisybayes.nn.NetworkPosterior``; both
    answer the methods below, and ``info`` (a :class:`FitInfo`) says how the fit went.
    """

    info: FitInfo

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """The floating dtype of draws and predictions."""

    @abstractmethod
    def sample(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``n`` posterior draws per parameter: ``{name: (n, *shape)}``."""

    @abstractmethod
    def summary(self, hdi_prob: float = 0.94, *, corrected: bool = True) -> pd.DataFrame:
        """A table of the posterior, one row per parameter (or parameter tensor);
        PSIS-corrected where the fit kept draws to correct it by, unless ``corrected`` is
        False."""

    @abstractmethod
    def predict(
        self,
        x: Any,
        *,
        n_samples: int = 1000,
        level: float = 0.94,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Prediction:
        """The posterior predictive of ``y`` at new inputs ``x``."""

    @abstractmethod
    def check(
        self,
        x: Any = None,
        y: Any = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CheckReport:
        """Is the approximation trustworthy? Raises ``NotImplementedError`` with the reason
        where the diagnostic cannot be computed."""

    @abstractmethod
    def to_arviz(
        self,
        x: Any = None,
        y: Any = None,
        *,
        n_draws: int = 1000,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> InferenceData:
        """An ArviZ ``InferenceData``: draws, and at ``x``, ``y`` (or the fit's data) the
        observations, posterior predictive draws and pointwise log-likelihood."""


class GaussianPosterior(Posterior):
    """A Gaussian approximation ``q`` of the posterior of an ``nb.Model``'s parameters.

    Draws live in the unconstrained space and are mapped to each parameter's support, so
    ``mean``, ``sd``, ``sample`` and ``summary`` are on the constrained (user's) scale.
    ``data`` is the ``(x tuple, y)`` the fit saw (``None`` if unknown); :meth:`check`,
    :meth:`reweighted` and :meth:`to_arviz` use it unless given ``x`` and ``y``.

    ``importance`` holds draws of ``q`` with PSIS weights towards the posterior, kept by a
    fit that computed k-hat (``family="auto"``), found it at most 0.7 and the weights even
    enough (``ImportanceDraws.corrects``): ``mean``, ``sd``
    and ``summary`` are then corrected by them (Vehtari et al. 2024), the best estimate the
    fit can certify; ``q_mean``, ``q_sd`` and ``summary(corrected=False)`` are ``q``'s own.
    ``predict`` then resamples the weighted draws; ``sample`` and ``to_arviz`` draw from
    ``q``.
    """

    def __init__(
        self,
        model: Model,
        layout: ParamLayout,
        family: GaussianFamily,
        info: FitInfo,
        data: Data | None = None,
        importance: ImportanceDraws | None = None,
    ) -> None:
        self.model = model
        self.layout = layout
        self.family = family
        self.info = info
        self.data = data
        self._importance = importance
        self._log_joint = LogJoint(model, layout)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_importance", None)  # pickled before importance draws existed
        self.__dict__.update(state)

    @property
    def importance(self) -> ImportanceDraws | None:
        """The fit's PSIS-weighted draws of ``q`` that correct ``mean``, ``sd`` and
        ``summary`` (``None``: not corrected)."""
        return self._importance

    @importance.setter
    def importance(self, value: ImportanceDraws | None) -> None:
        self._importance = value
        self.__dict__.pop("_moments", None)

    def __repr__(self) -> str:
        return (
            f"GaussianPosterior(family={self.info.family!r}, parameters={self.layout.names}, "
            f"n_data={self.info.n_data}, converged={self.info.converged})"
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.family.mean().dtype

    def sample_unconstrained(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` draws of the flat unconstrained vector, ``(n, P)``."""
        n = check_positive_int("n", n)
        return self.family.rsample(n, generator=make_generator(seed, generator)).detach()

    def sample(
        self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``n`` posterior draws per parameter: ``{name: (n, *shape)}``."""
        return self.layout.values(self.sample_unconstrained(n, seed=seed, generator=generator))

    @cached_property
    def _summary_draws(self) -> dict[str, torch.Tensor]:
        return self.sample(_SUMMARY_DRAWS, seed=0)

    @cached_property
    def _q_moments(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Exact moments for unconstrained parameters, and for the others where the family
        knows them (an optional ``transformed_moments()`` giving ``{name: (mean, sd)}``: an
        exact posterior's); Monte Carlo (10,000 draws) otherwise."""
        loc, variance = self.family.mean(), self.family.variance()
        integrated = getattr(self.family, "transformed_moments", None)
        known = {} if integrated is None else integrated()
        means, sds = {}, {}
        for block in self.layout.blocks:
            if self.layout.is_identity(block.name):
                means[block.name] = loc[block.start : block.stop].reshape(block.spec.shape)
                sds[block.name] = (
                    variance[block.start : block.stop].sqrt().reshape(block.spec.shape)
                )
            elif block.name in known:
                mean, sd = known[block.name]
                means[block.name] = mean.reshape(block.spec.shape)
                sds[block.name] = sd.reshape(block.spec.shape)
            else:
                draws = self._summary_draws[block.name]
                means[block.name], sds[block.name] = draws.mean(0), draws.std(0)
        return means, sds

    def corrected_moments(
        self, importance: ImportanceDraws
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Means and sds corrected by PSIS-weighted draws (``reweighting.ImportanceDraws``;
        the difference form around ``q``'s exact moments for unconstrained parameters)."""
        values = self.layout.values(importance.theta)
        means, sds = {}, {}
        for name in self.layout.names:
            exact = (self.q_mean[name], self.q_sd[name]) if self.layout.is_identity(name) else None
            means[name], sds[name] = importance.moments(values[name], exact)
        return means, sds

    @cached_property
    def _moments(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if self.importance is None:
            return self._q_moments
        return self.corrected_moments(self.importance)

    @property
    def q_mean(self) -> dict[str, torch.Tensor]:
        """The means of ``q`` itself, ``{name: tensor of the parameter's shape}``."""
        return self._q_moments[0]

    @property
    def q_sd(self) -> dict[str, torch.Tensor]:
        """The standard deviations of ``q`` itself."""
        return self._q_moments[1]

    @property
    def mean(self) -> dict[str, torch.Tensor]:
        """Posterior means, ``{name: tensor of the parameter's shape}``: PSIS-corrected
        where the fit kept ``importance`` draws, else ``q``'s."""
        return self._moments[0]

    @property
    def sd(self) -> dict[str, torch.Tensor]:
        """Posterior standard deviations, corrected as :attr:`mean` is."""
        return self._moments[1]

    def summary(self, hdi_prob: float = 0.94, *, corrected: bool = True) -> pd.DataFrame:
        """One row per scalar parameter: ``mean``, ``sd`` and the highest-density interval.

        With ``corrected`` (default) and ``importance`` draws kept by the fit, all three are
        PSIS-corrected (the interval from the weighted draws; ``attrs["khat"]`` holds the
        k-hat); otherwise they are ``q``'s own. The index's name says which, with the fit's
        k-hat where it computed one.
        """
        check_probability("hdi_prob", hdi_prob)
        check_bool("corrected", corrected)
        importance = self.importance if corrected else None
        mean, sd = self._moments if importance is not None else self._q_moments
        if importance is not None:
            draws, weights = self.layout.values(importance.theta), importance.weights
        else:
            draws, weights = self._summary_draws, None
        lows, highs = [], []
        for name in self.layout.names:
            low, high = hdi(draws[name], hdi_prob, weights)
            lows.append(low.reshape(-1))
            highs.append(high.reshape(-1))
        tail = (1 - hdi_prob) / 2 * 100
        table = pd.DataFrame(
            {
                "mean": self.flat(mean).tolist(),
                "sd": self.flat(sd).tolist(),
                f"hdi_{tail:g}%": torch.cat(lows).tolist(),
                f"hdi_{100 - tail:g}%": torch.cat(highs).tolist(),
            },
            index=pd.Index(self.layout.labels(), name=self._summary_title(importance)),
        )
        table.attrs["khat"] = None if importance is None else importance.khat
        return table

    def flat(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-parameter tensors (``mean``, ``sd``) as one vector in the order of
        ``layout.labels()``."""
        return torch.cat([values[n].reshape(-1) for n in self.layout.names])

    def _summary_title(self, importance: ImportanceDraws | None) -> str | None:
        """The name of the summary's index: says how the moments were computed, with the
        fit's k-hat where it computed one."""
        if importance is not None:
            return f"PSIS-corrected, the fit's k-hat {importance.khat:.2f}"
        if self.info.khat is not None:
            return f"not corrected, the fit's k-hat {self.info.khat:.2f}"
        return None

    def predict(
        self,
        x: Any,
        *,
        n_samples: int = 1000,
        level: float = 0.94,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Prediction:
        """The posterior predictive of ``y`` at new inputs ``x`` (a tensor or tuple, rows first).

        Uses ``n_samples`` parameter draws, each with one simulated observation, in one
        batched pass; means and variances are exact given the draws, intervals are
        empirical quantiles. The draws are ``q``'s, or, where ``importance`` corrects the
        summaries, resampled from its weighted draws (sampling-importance-resampling), so
        predictions agree with the corrected ``mean``.
        """
        n_samples = check_positive_int("n_samples", n_samples)
        check_probability("level", level)
        gen = make_generator(seed, generator)
        xs = as_inputs(x, dtype=self.dtype)
        self._check_input_shapes(xs)
        theta = self._predictive_draws(n_samples, gen)

        def moments_and_draw(u: torch.Tensor):
            dist = self._log_joint.likelihood(self.layout.values(u), xs)
            return dist.mean, dist.variance, dist.sample()

        with batched_evaluation(), seeded_from(gen):
            means, variances, draws = vmap(moments_and_draw, randomness="different")(theta)
        return Prediction.from_draws(means, variances, draws, level)

    def _predictive_draws(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` unconstrained draws for predictions: of ``q``, or resampled with
        replacement from the ``importance`` draws in proportion to their weights."""
        if self.importance is None:
            return self.sample_unconstrained(n, generator=generator)
        index = torch.multinomial(self.importance.weights.cpu(), n, replacement=True,
                                  generator=generator)
        return self.importance.theta[index.to(self.importance.theta.device)]

    # --- diagnostics and export (see ``diagnostics.py`` and ``arviz_export.py``)
    def fit_data(self, x: Any = None, y: Any = None, *, caller: str = "this method") -> Data:
        """``(x, y)`` converted to the posterior's dtype (integer inputs as they are), or the
        fit's data if both are None."""
        if x is None and y is None:
            if self.data is None:
                raise ValueError(
                    f"{caller} needs the data the posterior was fitted to: pass x and y "
                    "(this Posterior was built without data)"
                )
            return self.data
        if x is None or y is None:
            missing = "x" if x is None else "y"
            raise ValueError(f"{caller} needs both x and y, got {missing}=None")
        xs, y_tensor = as_data(x, y)
        xs = tuple(t.to(self.dtype) if t.is_floating_point() else t for t in xs)
        return xs, y_tensor.to(self.dtype)

    def _check_input_shapes(self, xs: tuple[torch.Tensor, ...]) -> None:
        """New inputs must have the fit's shape past the rows (when the fit's data is known)."""
        if self.data is None:
            return
        fitted = self.data[0]
        if len(xs) != len(fitted) or any(
            a.shape[1:] != b.shape[1:] for a, b in zip(xs, fitted, strict=True)
        ):
            wanted = [("N", *t.shape[1:]) for t in fitted]
            got = [tuple(t.shape) for t in xs]
            raise ValueError(f"x must have the fit's shape past the rows, {wanted}, got {got}")

    def log_likelihood(self, theta: torch.Tensor, x: Any, y: torch.Tensor) -> torch.Tensor:
        """``log p(y_i | x_i, theta_s)`` per draw and observation: ``(S, *y.shape)`` for
        unconstrained draws ``theta`` ``(S, P)``."""
        xs = as_inputs(x, dtype=self.dtype)

        def pointwise(u: torch.Tensor) -> torch.Tensor:
            return self._log_joint.likelihood(self.layout.values(u), xs).log_prob(y)

        with batched_evaluation():
            return vmap(pointwise)(theta)

    def simulate(
        self, theta: torch.Tensor, x: Any, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One simulated ``y`` per unconstrained draw ``theta`` ``(S, P)`` at inputs ``x``:
        ``(S, *y.shape)``."""
        xs = as_inputs(x, dtype=self.dtype)

        def draw(u: torch.Tensor) -> torch.Tensor:
            return self._log_joint.likelihood(self.layout.values(u), xs).sample()

        with batched_evaluation(), seeded_from(make_generator(None, generator)):
            return vmap(draw, randomness="different")(theta)

    def check(
        self,
        x: Any = None,
        y: Any = None,
        *,
        n_draws: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CheckReport:
        """Is ``q`` trustworthy? Pareto k-hat, convergence and sd understatement in one
        :class:`~noisybayes.infer.diagnostics.CheckReport` (see ``diagnostics.check``)."""
        from noisybayes.infer.diagnostics import check

        return check(self, x, y, n_draws=n_draws, seed=seed, generator=generator)

    def reweighted(
        self,
        x: Any = None,
        y: Any = None,
        *,
        n_draws: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> pd.DataFrame:
        """PSIS-corrected ``mean`` and ``sd`` per scalar parameter (see
        ``diagnostics.reweighted``); raises if k-hat > 0.7."""
        from noisybayes.infer.diagnostics import reweighted

        return reweighted(self, x, y, n_draws=n_draws, seed=seed, generator=generator)

    def to_arviz(
        self,
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
        """An ArviZ ``InferenceData`` of independent draws in one chain, dimensions named by
        ``dims`` and ``coords``; see ``noisybayes.infer.arviz_export.to_arviz``."""
        from noisybayes.infer.arviz_export import to_arviz

        return to_arviz(
            self, x, y, n_chains=n_chains, n_draws=n_draws, seed=seed, generator=generator,
            response=response, dims=dims, coords=coords,
        )
