"""``BNNRegressor`` and ``BNNClassifier``: Bayesian MLPs with scikit-learn conventions.

Two routes to one mean-field Gaussian posterior of an MLP, on standardised inputs (and
targets, for regression): ``method="layers"``, a network of :class:`noisybayes.nn.BayesLinear`
layers (local reparameterization) trained by :func:`noisybayes.nn.train` on the per-datum
negative ELBO, or ``method="ivon"``, a plain ``nn.Linear`` network whose optimizer,
:class:`noisybayes.optim.IVON`, holds the posterior (:func:`noisybayes.nn.train_ivon`);
``method="auto"``, the regressor's default, picks IVON for one network with the Gaussian
likelihood (where it was chosen and can run), the layers otherwise.
The classifier's default ``temperature`` is 1 (the posterior) and network one hidden layer of
50 units; the regressor's are 0.5 (a tempered posterior) and two layers of 50, its layers an
equal-weight mixture of three such posteriors, chosen on validation rows. ``score`` is the
mean test log predictive density, ``mean_i log mean_s p(y_i | x_i, w_s)``, in the target's
original units (not scikit-learn's R^2 or accuracy: a proper score of the whole predictive
distribution).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.distributions import Normal

from noisybayes._checks import (
    as_float_tensor,
    check_choice,
    check_device,
    check_label_types,
    check_positive,
    check_positive_int,
    is_number,
)
from noisybayes._rng import make_generator, seeded_from
from noisybayes.engine.distributed import World
from noisybayes.estimators._base import (
    array_input,
    location_and_scale,
    tensor_of,
    unfitted_on_error,
)
from noisybayes.infer.posterior import FitInfo
from noisybayes.infer.prediction import Prediction
from noisybayes.math.families import inverse_softplus
from noisybayes.nn.ivon_train import ivon_accepts, train_ivon
from noisybayes.nn.likelihoods import (
    Categorical,
    Gaussian,
    HeteroscedasticGaussian,
    HeteroscedasticStudentT,
    Likelihood,
    MeanColumnGaussian,
)
from noisybayes.nn.likelihoods import StudentT as StudentTLikelihood
from noisybayes.nn.linear import BayesLinear
from noisybayes.nn.mixture import Mixture
from noisybayes.nn.posterior import NetworkPosterior
from noisybayes.nn.predict import predict_classes, predict_regression
from noisybayes.nn.train import train

__all__ = ["BNNClassifier", "BNNRegressor"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
_LEARNING_RATES = {"layers": 1e-2, "ivon": 0.03}  # the first step size of Adam, of IVON
RegressionLikelihood = Literal[
    "gaussian", "heteroscedastic", "student_t", "heteroscedastic_student_t"
]
_REGRESSION_LIKELIHOODS: tuple[str, ...] = get_args(RegressionLikelihood)
_START_DF = 5.0  # where learned degrees of freedom start
Method = Literal["auto", "layers", "ivon"]
_METHODS: tuple[str, ...] = get_args(Method)


def default_epochs(n_rows: int, batch_size: int, min_epochs: int, min_steps: int) -> int:
    """Passes over ``n_rows`` rows in batches of ``batch_size`` (``ceil(n_rows / batch)`` steps
    a pass): ``max(min_epochs, ceil(min_steps / steps_per_pass))``, at least ``min_epochs``
    passes and enough passes for ``min_steps`` steps."""
    per_epoch = math.ceil(n_rows / max(1, min(batch_size, n_rows)))
    return max(min_epochs, math.ceil(min_steps / per_epoch))


def _mean_first(run: Callable[[Likelihood, int], NetworkPosterior], model: nn.Module,
                likelihood: HeteroscedasticGaussian, n_epochs: int,
                start_scale: float) -> NetworkPosterior:
    """Train a heteroscedastic network of ``nn.Linear`` layers in two parts: half the epochs
    of its mean column under one learned Gaussian noise sd (:class:`MeanColumnGaussian`,
    starting at ``start_scale``), then the rest under ``likelihood``, its scale column
    started at that sd's value (weights 0, bias ``softplus^{-1}(sd - min_scale)``: the
    Gaussian's sd, a Student-t's scale, a slightly wider start); ``run(likelihood,
    epochs)`` trains, each part with a new optimizer and its own step-size decay.
    IVON's route: learned from the start, its noise scale per input explained the regions
    the mean did not yet fit as noise and the mean stopped fitting them (energy); started
    from the mean it kept energy's predictive mean on the validation rows and was ahead of
    the Gaussian network's log-likelihood on every UCI set, where for the layers (Adam) the
    start did not help on balance (``benchmarks/RESULTS.md``)."""
    first = n_epochs // 2
    start = MeanColumnGaussian(start_scale)
    warm = run(start, first)
    free = inverse_softplus((start.scale.detach() - likelihood.min_scale).clamp_min(1e-6))
    last = list(model.modules())[-1]  # the output layer, as _network builds it for IVON
    assert isinstance(last, nn.Linear) and last.bias is not None
    with torch.no_grad():
        last.weight[1].zero_()
        last.bias[1] = free
    post = run(likelihood, n_epochs - first)
    info = post.info
    post.info = dataclasses.replace(
        info, n_steps=warm.info.n_steps + info.n_steps,
        n_epochs=warm.info.n_epochs + info.n_epochs, seconds=warm.info.seconds + info.seconds,
        loss_trace=torch.cat([warm.info.loss_trace, info.loss_trace]),
        reason=(f"mean-first start: {first} epochs of the mean column under one Gaussian noise "
                f"sd, then {n_epochs - first} under the heteroscedastic likelihood; "
                f"{info.reason}"))
    return post


class _BNN(BaseEstimator):
    """Shared set-up: the network, standardisation of ``X``, training, draws of outputs."""

    # ``n_epochs=None``: (at least these passes, at least these steps) per method
    _TRAINING_LENGTH: ClassVar[dict[str, tuple[int, int]]] = {
        "layers": (40, 5000), "ivon": (40, 5000)}
    # ``n_components=None``: the components per method
    _COMPONENTS: ClassVar[dict[str, int]] = {"layers": 1, "ivon": 1}

    def __init__(
        self,
        hidden: int | tuple[int, ...] = (50,),
        *,
        method: Method = "layers",
        activation: Literal["relu", "tanh", "gelu"] = "relu",
        prior_scale: float = 1.0,
        init_scale: float = 0.1,
        temperature: float = 1.0,
        n_epochs: int | None = None,
        batch_size: int = 128,
        learning_rate: float | None = None,
        n_samples: int = 1,
        n_components: int | None = 1,
        n_predict_samples: int = 200,
        seed: int | None = 0,
        progress: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.hidden = hidden
        self.method = method
        self.activation = activation
        self.prior_scale = prior_scale
        self.init_scale = init_scale
        self.temperature = temperature
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_samples = n_samples
        self.n_components = n_components
        self.n_predict_samples = n_predict_samples
        self.seed = seed
        self.progress = progress
        self.device = device

    def _hidden(self) -> tuple[int, ...]:
        """``hidden`` as a tuple of widths (one integer is one layer)."""
        hidden: Any = self.hidden
        widths = tuple(hidden) if isinstance(hidden, (tuple, list)) else (hidden,)
        for h in widths:
            if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
                raise ValueError(f"hidden must hold integers >= 1, got {self.hidden!r}")
        return tuple(int(h) for h in widths)

    def _auto_method(self, n_components: int | None) -> str:
        """What ``method="auto"`` fits with ``n_components`` asked (``None``: the method's
        default): the layers (subclasses choose otherwise)."""
        return "layers"

    def _network(self, n_in: int, n_out: int) -> nn.Sequential:
        """The MLP: ``BayesLinear`` layers, or plain ``nn.Linear`` ones for IVON."""
        check_choice("activation", self.activation, tuple(_ACTIVATIONS))
        prior = Normal(0.0, check_positive("prior_scale", self.prior_scale))

        def linear(a: int, b: int) -> nn.Module:
            if self.method_ == "ivon":
                return nn.Linear(a, b)
            return BayesLinear(a, b, prior=prior, init_scale=self.init_scale)

        widths = [n_in, *self._hidden()]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [linear(a, b), _ACTIVATIONS[self.activation]()]
        layers.append(linear(widths[-1], n_out))
        return nn.Sequential(*layers)

    def _fit_network(self, x: torch.Tensor, target: torch.Tensor, n_out: int, lik: Likelihood) -> None:
        """Train on checked inputs ``x`` ``(N, d)`` (float64: standardised before the network's
        float32, so that columns far from 0 keep their variation) and the model's ``target``."""
        check_choice("method", self.method, _METHODS)
        check_positive_int("n_predict_samples", self.n_predict_samples)  # before training
        check_device("device", self.device)
        self.x_mean_, self.x_scale_ = location_and_scale(x, centre=True)
        gen = make_generator(self.seed)
        asked = (None if self.n_components is None
                 else check_positive_int("n_components", self.n_components))
        self.method_ = self._auto_method(asked) if self.method == "auto" else self.method
        k = self._COMPONENTS[self.method_] if asked is None else asked
        if k > 1 and self.method_ == "ivon":
            raise ValueError(f"n_components must be 1 with method='ivon' (one optimizer "
                             f"holds one posterior), got {k}")
        with seeded_from(gen):  # the initial means, one set per component
            networks = [self._network(x.shape[1], n_out) for _ in range(k)]
        model = networks[0] if k == 1 else Mixture(networks)
        self.n_components_ = k
        self.model_ = model.to(self.device)
        self.likelihood_ = lik.to(self.device)
        if self.n_epochs is None:
            batch = check_positive_int("batch_size", self.batch_size)
            n_epochs = default_epochs(x.shape[0], batch, *self._TRAINING_LENGTH[self.method_])
        else:
            n_epochs = check_positive_int("n_epochs", self.n_epochs)
        settings = dict(
            batch_size=self.batch_size,
            learning_rate=(_LEARNING_RATES[self.method_] if self.learning_rate is None
                           else self.learning_rate),
            n_samples=self.n_samples,
            temperature=self.temperature, generator=gen, progress=self.progress,
        )
        x_std = ((x - self.x_mean_) / self.x_scale_).to(self.device, torch.float32)
        target = target.to(self.device)

        def run(likelihood: Likelihood, epochs: int) -> NetworkPosterior:
            chosen = {**settings, "likelihood": likelihood.to(self.device), "n_epochs": epochs}
            if self.method_ == "ivon":
                return train_ivon(self.model_, x_std, target, prior_scale=self.prior_scale,
                                  init_scale=self.init_scale, **chosen)
            return train(self.model_, x_std, target, **chosen)

        self.posterior_ = self._train(run, n_epochs)
        self.info_: FitInfo = self.posterior_.info
        self.model_.eval()

    def _train(self, run: Callable[[Likelihood, int], NetworkPosterior],
               n_epochs: int) -> NetworkPosterior:
        """The posterior from ``run(likelihood, epochs)``: all epochs under ``likelihood_``
        (the regressor starts IVON's heteroscedastic networks from the mean)."""
        return run(self.likelihood_, n_epochs)

    def _outputs(self, X: Any, gen: torch.Generator | None = None) -> torch.Tensor:
        """``(S, B, n_out)`` network outputs at standardised ``X`` under ``S`` weight draws,
        drawn from ``gen`` (a new one from ``seed`` when ``None``)."""
        check_is_fitted(self, "model_")
        x = tensor_of(validate_data(self, array_input("X", X), reset=False, dtype=np.float64))
        gen = make_generator(self.seed) if gen is None else gen
        with torch.no_grad(), seeded_from(gen):
            x_std = ((x - self.x_mean_) / self.x_scale_).to(self.device, torch.float32)
            return self.posterior_.sample_outputs(x_std, self.n_predict_samples, gen)

    def _prediction(self, X: Any,
                    summarise: Callable[[torch.Tensor], Prediction]) -> Prediction:
        """``summarise(outputs)`` of the weight draws at ``X``; the draws it makes itself
        (the intervals' observations) come from ``seed`` as well, after the weights'."""
        gen = make_generator(self.seed)
        outputs = self._outputs(X, gen)
        with torch.no_grad(), seeded_from(gen):
            return summarise(outputs)


class BNNRegressor(RegressorMixin, _BNN):
    """A Bayesian MLP for regression (one target), learning its noise scale.

    Args:
        hidden: hidden layer widths (one integer is one layer; ``()`` is a linear model).
            The default, two layers of 50, was ahead of one layer of 50 on the UCI
            validation rows of five of six sets with both methods (behind on bostonHousing).
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.
        method: ``"layers"`` (``BayesLinear`` layers, Adam on the ELBO) or ``"ivon"`` (plain
            ``nn.Linear`` layers, :class:`noisybayes.optim.IVON` with ``ess = N /
            temperature`` and ``weight_decay = 1 / (ess prior_scale^2)``, so that its implied
            Gaussian prior has sd ``prior_scale``; ``hess_init`` makes the initial posterior
            sd ``init_scale``); both end in a mean-field Gaussian posterior (the layers, by
            default, in a mixture of three, see ``n_components``). ``"auto"`` (the default) is
            the layers, except IVON for one network with the Gaussian likelihood in one
            process. On the UCI validation rows of ``benchmarks/uci_choice.py
            --settings``, at the default network and temperature, one network of layers was
            ahead of IVON with the heteroscedastic Student-t on four of six sets (behind on
            bostonHousing, even on concrete), and even with it with the Gaussian (three sets
            each) in about 1.8x IVON's time; three components with the Gaussian were ahead on
            four (mean LL +0.03, a lower RMSE on all six) in about 3.6x IVON's time, which
            ``"auto"`` does not spend for the simple model (``benchmarks/RESULTS.md``).
            ``method_`` says which ran; ``learning_rate`` is that method's.
        likelihood: ``"heteroscedastic_student_t"`` (the default: a noise scale per input,
            from a second output, and heavy tails; as a likelihood it nests the other
            three), ``"gaussian"`` (one learned noise sd), ``"heteroscedastic"`` (a noise sd
            per input) or ``"student_t"`` (one learned noise scale). With IVON a
            heteroscedastic network is started from the mean: the first half of the epochs
            fit its mean column under one noise sd, the rest the whole likelihood, so that
            the noise scale does not take over regions the mean has not yet fitted; the
            layers (the default here) fit it from the start,
            where with one hidden layer a noise scale per input explained a hard region of
            the inputs as noise instead of fitting it (energy's predictive mean; with the
            default two layers it no longer did). On the UCI sets, with one hidden layer, the
            heteroscedastic Student-t was ahead of the Gaussian network's log-likelihood on
            all six, validation and test rows alike (at temperature 1; at 0.5 the validation
            rows again), in the same time; ``"gaussian"`` is the better point predictor (a
            lower RMSE of the predictive mean on most of them) and the better density where
            the noise is close to constant (scikit-learn's diabetes; both with IVON at one
            hidden layer; ``benchmarks/RESULTS.md``).
        df: the Student-t likelihoods' degrees of freedom; ``None`` learns them (a point
            estimate, like the noise scale, on ``df > 2``, starting at 5; the linear
            ``StudentTLinearRegression`` puts a prior on them instead), a number fixes them.
        init_noise_scale: the learned noise scale's starting value, in units of y's sd
            (``"gaussian"`` and ``"student_t"``, and the one noise sd of IVON's mean-first
            start of the heteroscedastic likelihoods; unused by the default fit, whose scale
            column is learned from the start). A small start (0.1) makes the network
            explain the data before the noise does; a large one (0.5) lets the fit settle
            where the noise explains much of y and most hidden units are pruned to the
            prior, which underfits small data sets. Not much smaller than the true noise
            either: from 0.02 the fit can stay overconfident.
        prior_scale: sd of the ``Normal(0, prior_scale)`` prior on every weight (the data
            are standardised, so 1 is a neutral default).
        init_scale: initial posterior sds, see :class:`noisybayes.nn.BayesLinear` (``<
            prior_scale`` for IVON).
        temperature: the KL weight ``T >= 0``: ``T > 0`` tempers the likelihood to the
            power ``1 / T`` against the prior (for IVON ``ess = N / T``), 1 being the
            Bayesian posterior of the model as written; 0 drops the KL (the likelihood
            alone, layers only). The default 0.5 is a tempered ("cold") posterior, the
            likelihood counted twice: on the UCI validation rows of
            ``benchmarks/uci_choice.py --settings`` it was ahead of 1 in log-likelihood on
            all six sets' means with both methods at one hidden layer (clearly on
            bostonHousing, concrete and wine with IVON, on energy and yacht with the layers),
            and with the layers at the default two layers on all six (clearly on five),
            where the prior sd, initial sd and step size were re-checked and kept
            (``benchmarks/RESULTS.md``). Set 1 for the posterior itself (e.g. to
            compare with MCMC); ``info_.temperature`` records the one used.
        n_epochs: passes over the data; ``None`` gives about 5000 steps (at least 40
            passes; :class:`BNNClassifier` has its own rule).
        batch_size, learning_rate, n_samples: the training loop's settings (``n_samples``:
            weight draws per row, or for IVON per step). ``learning_rate=None`` is 1e-2
            (Adam) for the layers and 0.03 (IVON's step size, not rescaled by its
            ``hess_init``) for IVON. Large batches (the default 128, or all rows of a small
            data set) reduce the gradient noise of the posterior scales, which sets how many
            steps the fit needs.
        n_components: ``K > 1`` fits an equal-weight mixture of ``K`` mean-field
            posteriors from different random starts (:class:`noisybayes.nn.Mixture`),
            trained together in one vectorised pass; the components find different
            posterior modes, which mostly improves the predictive log-likelihood. They share
            one likelihood. Only with the layers. ``None`` (the default) is 3 with the
            layers and 1 with IVON: on the UCI validation rows of
            ``benchmarks/uci_choice.py --settings``, three components were ahead of one in
            log-likelihood on all six sets (clearly on four) in about 1.8-2 times the time
            (``benchmarks/RESULTS.md``); ``n_components_`` says how many were fitted.
        n_predict_samples: weight draws per prediction. seed: randomness of fit and predict
            (on a GPU the weight noise comes from the device's own generator).
        progress: a progress bar with the loss while training; ``None`` (default) shows it
            only when stderr is a terminal, so a person at a shell sees it and logs do not.
        device: where the network trains and predicts; results return on the CPU.

    Fitted attributes: ``method_`` (``"layers"`` or ``"ivon"``), ``n_components_``, ``model_``
    (the network, or a ``Mixture`` of ``n_components_``),
    ``likelihood_``, ``posterior_`` (an ``nb.nn.NetworkPosterior``, for IVON an
    ``nb.nn.IVONPosterior``, on the standardised data: ``summary()``, ``to_arviz()``), ``info_`` (its ``nb.FitInfo``), the standardisation ``x_mean_``,
    ``x_scale_``, ``y_mean_``, ``y_scale_``.
    """

    _COMPONENTS: ClassVar[dict[str, int]] = {"layers": 3, "ivon": 1}

    def __init__(
        self,
        hidden: int | tuple[int, ...] = (50, 50),
        *,
        method: Method = "auto",
        activation: Literal["relu", "tanh", "gelu"] = "relu",
        prior_scale: float = 1.0,
        init_scale: float = 0.1,
        temperature: float = 0.5,
        n_epochs: int | None = None,
        batch_size: int = 128,
        learning_rate: float | None = None,
        n_samples: int = 1,
        n_components: int | None = None,
        n_predict_samples: int = 200,
        seed: int | None = 0,
        progress: bool | None = None,
        device: str | torch.device = "cpu",
        likelihood: RegressionLikelihood = "heteroscedastic_student_t",
        df: float | None = None,
        init_noise_scale: float = 0.1,
    ) -> None:
        super().__init__(
            hidden, method=method, activation=activation, prior_scale=prior_scale,
            init_scale=init_scale,
            temperature=temperature, n_epochs=n_epochs, batch_size=batch_size,
            learning_rate=learning_rate, n_samples=n_samples, n_components=n_components,
            n_predict_samples=n_predict_samples, seed=seed, progress=progress, device=device,
        )
        self.likelihood = likelihood
        self.df = df
        self.init_noise_scale = init_noise_scale

    def _auto_method(self, n_components: int | None) -> str:
        """IVON for one network with the Gaussian likelihood in one process (even with one
        network of layers on the validation rows in about half its time, a little behind three
        in about 0.28x theirs), at a temperature > 0 and
        ``init_scale < prior_scale`` (IVON's own conditions); the layers otherwise (the
        heteroscedastic Student-t, where the validation rows chose them; a mixture, another
        likelihood, a data-parallel fit: IVON holds one posterior and cannot sum its steps
        over processes)."""
        usable = ivon_accepts(self.temperature, self.prior_scale, self.init_scale)
        one = n_components in (None, 1) and not World.current().parallel
        return "ivon" if one and usable and self.likelihood == "gaussian" else "layers"

    def _train(self, run: Callable[[Likelihood, int], NetworkPosterior],
               n_epochs: int) -> NetworkPosterior:
        """IVON's heteroscedastic networks start from the mean (:func:`_mean_first`, under
        one noise sd starting at ``init_noise_scale``); every other fit is one run."""
        lik = self.likelihood_
        if self.method_ == "ivon" and isinstance(lik, HeteroscedasticGaussian) and n_epochs >= 2:
            start = check_positive("init_noise_scale", self.init_noise_scale)
            return _mean_first(run, self.model_, lik, n_epochs, start)
        return run(lik, n_epochs)

    @unfitted_on_error
    def fit(self, X: Any, y: Any) -> BNNRegressor:
        """Fit the posterior to ``X`` ``(N, d)`` and ``y`` ``(N,)``; returns ``self``."""
        check_choice("likelihood", self.likelihood, _REGRESSION_LIKELIHOODS)
        X_a, y_a = validate_data(  # 2 rows at least: y's sd sets the units of the prior
            self, array_input("X", X), array_input("y", y), dtype=np.float64, y_numeric=True,
            ensure_min_samples=2,
        )
        y_t = torch.as_tensor(np.asarray(y_a, dtype=np.float64))
        y_mean, y_scale = location_and_scale(y_t[:, None], centre=True)
        self.y_mean_, self.y_scale_ = float(y_mean[0]), float(y_scale[0])
        lik, n_out = self._likelihood()
        z = ((y_t - self.y_mean_) / self.y_scale_).float()  # in float64, then the network's
        self._fit_network(tensor_of(X_a), z[:, None] if n_out == 1 else z, n_out, lik)
        return self

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        assert tags.regressor_tags is not None  # set by RegressorMixin
        tags.regressor_tags.poor_score = True  # score is a log density: no R^2 threshold
        return tags

    def _likelihood(self) -> tuple[Likelihood, int]:
        """The likelihood and the network's number of outputs (2 with a scale column)."""
        if self.likelihood == "heteroscedastic":
            return HeteroscedasticGaussian(), 2
        if self.likelihood == "gaussian":
            return Gaussian(check_positive("init_noise_scale", self.init_noise_scale)), 1
        df, learn_df = self.df, self.df is None
        if df is None:
            df = _START_DF
        elif not (is_number(df) and 2 < df < math.inf):
            raise ValueError(f"df must be None (learned) or a finite number > 2 (a finite "
                             f"noise variance), got {df!r}")
        if self.likelihood == "student_t":
            noise = check_positive("init_noise_scale", self.init_noise_scale)
            return StudentTLikelihood(df, noise, learn_df=learn_df), 1
        return HeteroscedasticStudentT(df, learn_df=learn_df), 2

    def predict_distribution(self, X: Any, level: float = 0.9) -> Prediction:
        """The posterior predictive at ``X``: an ``nb.Prediction``, fields ``(B,)``, y's units."""
        pred = self._prediction(X, lambda out: predict_regression(out, self.likelihood_, level))
        flat = pred.apply(lambda field: field.reshape(-1).cpu().double())
        return flat.affine(self.y_mean_, self.y_scale_)  # in float64: y may sit far from 0

    def predict(self, X: Any, return_std: bool = False):
        """Predictive mean ``(B,)``, a numpy array; with ``return_std`` also the total
        predictive sd."""
        pred = self.predict_distribution(X)
        return (pred.mean.numpy(), pred.sd.numpy()) if return_std else pred.mean.numpy()

    def log_predictive_density(self, X: Any, y: Any) -> np.ndarray:
        """``log mean_s p(y_i | x_i, w_s)`` per row, ``(B,)``, in y's original units."""
        outputs = self._outputs(X)
        y_t = as_float_tensor("y", y, ndim=(1, 2), dtype=torch.float64)
        if y_t.shape[1:] not in ((), (1,)) or y_t.shape[0] != outputs.shape[1]:
            raise ValueError(f"y must have shape ({outputs.shape[1]},) or "
                             f"({outputs.shape[1]}, 1), one value per row of X, got "
                             f"{tuple(y_t.shape)}")
        z = ((y_t.reshape(-1) - self.y_mean_) / self.y_scale_).to(outputs.device, torch.float32)
        with torch.no_grad():
            lp = torch.stack(
                [
                    self.likelihood_.log_prob(o, z if o.shape[-1] == 2 else z[:, None])
                    for o in outputs
                ]
            )
        return (lp.logsumexp(0) - math.log(lp.shape[0]) - math.log(self.y_scale_)).cpu().numpy()

    def score(self, X: Any, y: Any) -> float:
        """Mean test log-likelihood (log predictive density) per row, in y's units; not
        ``RegressorMixin``'s R^2: a proper score of the whole predictive distribution, the
        criterion ``GridSearchCV`` and ``cross_val_score`` then maximise."""
        return float(self.log_predictive_density(X, y).mean())


class BNNClassifier(ClassifierMixin, _BNN):
    """A Bayesian MLP classifier (softmax output); arguments as :class:`BNNRegressor`,
    except ``hidden=(50,)`` (one layer; the regressor's two were not validated here),
    ``method="layers"`` (``"auto"`` gives the same here), ``n_components=1`` (one network:
    two or three were even with it on the validation rows of ``classify_choice.py``, at
    twice the time or more),
    ``temperature=1`` (the posterior: a colder one was not better on the validation
    rows of ``benchmarks/classify_choice.py``) and the training length: with the layers,
    ``n_epochs=None`` is 50 passes over the data (at least 200 steps) in batches of
    ``batch_size=256``, the setting chosen on validation rows cut from the training rows
    (``benchmarks/classify_choice.py``); longer training lowered the validation
    log-likelihood and raised the calibration error there.
    IVON keeps the regressor's length (about 5000 steps, at least 40 passes); ``method="auto"``
    is the layers here (IVON's classifier was not better on the validation rows).

    Fitted attributes: ``classes_`` (the sorted labels seen in fit), ``method_``,
    ``n_components_``, ``model_``, ``posterior_``, ``info_``.
    """

    _TRAINING_LENGTH: ClassVar[dict[str, tuple[int, int]]] = {
        "layers": (50, 200), "ivon": (40, 5000)}

    def __init__(
        self,
        hidden: int | tuple[int, ...] = (50,),
        *,
        method: Method = "layers",
        activation: Literal["relu", "tanh", "gelu"] = "relu",
        prior_scale: float = 1.0,
        init_scale: float = 0.1,
        temperature: float = 1.0,
        n_epochs: int | None = None,
        batch_size: int = 256,
        learning_rate: float | None = None,
        n_samples: int = 1,
        n_components: int = 1,
        n_predict_samples: int = 200,
        seed: int | None = 0,
        progress: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            hidden, method=method, activation=activation, prior_scale=prior_scale,
            init_scale=init_scale, temperature=temperature, n_epochs=n_epochs,
            batch_size=batch_size, learning_rate=learning_rate, n_samples=n_samples,
            n_components=n_components, n_predict_samples=n_predict_samples, seed=seed,
            progress=progress, device=device,
        )

    @unfitted_on_error
    def fit(self, X: Any, y: Any) -> BNNClassifier:
        """Fit the posterior to ``X`` ``(N, d)`` and labels ``y`` ``(N,)``; returns ``self``."""
        X_a, labels = validate_data(
            self, array_input("X", X), array_input("y", y), dtype=np.float64
        )
        check_label_types("y", labels)
        check_classification_targets(labels)
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y must hold at least 2 classes, got 1 class: {self.classes_.tolist()}"
            )
        target = torch.from_numpy(np.searchsorted(self.classes_, labels)).long()
        self._fit_network(tensor_of(X_a), target, len(self.classes_), Categorical())
        return self

    def _encode(self, y: Any) -> torch.Tensor:
        labels = np.asarray(y)
        if labels.ndim not in (1, 2) or labels.ndim == 2 and labels.shape[1] != 1:
            raise ValueError(f"y must have shape (N,) or (N, 1), one label per row, got "
                             f"{labels.shape}")
        labels = labels.reshape(-1)
        index = np.searchsorted(self.classes_, labels).clip(0, len(self.classes_) - 1)
        unseen = self.classes_[index] != labels
        if unseen.any():
            raise ValueError(
                f"y must hold labels seen in fit {self.classes_.tolist()}, got "
                f"{labels[unseen][0].item()!r}"
            )
        return torch.from_numpy(index).long()

    def predict_distribution(self, X: Any, level: float = 0.9) -> Prediction:
        """Predictive probabilities ``probs`` ``(B, K)``, entropy and mutual information
        ``(B,)`` (and the moments of the one-hot label, see ``nb.nn.predict``)."""
        pred = self._prediction(X, lambda out: predict_classes(out, self.likelihood_, level))
        return pred.apply(lambda field: field.cpu())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior predictive class probabilities ``(B, K)``, columns as ``classes_``."""
        probs = self.predict_distribution(X).probs
        assert probs is not None  # a classification prediction has class probabilities
        return probs.numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row."""
        probs = self.predict_proba(X)
        return self.classes_[probs.argmax(1)]

    def score(self, X: Any, y: Any) -> float:
        """Mean test log-likelihood ``mean_i log p(y_i | x_i, D)``; not ``ClassifierMixin``'s
        accuracy: a proper score of the predicted probabilities, the criterion
        ``GridSearchCV`` and ``cross_val_score`` then maximise."""
        target = self._encode(y).numpy()
        probs = self.predict_proba(X)
        if target.shape[0] != probs.shape[0]:
            raise ValueError(
                f"y must have as many rows as X ({probs.shape[0]}), got {target.shape[0]}"
            )
        picked = probs[np.arange(len(target)), target]
        return float(np.log(np.maximum(picked, 1e-45)).mean())
