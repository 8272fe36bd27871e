"""``BayesianGLMClassifier``: the bernoulli GLM as a scikit-learn binary classifier.

    eta = intercept + X coef,   P(y = classes_[1] | x) = g^{-1}(eta),   g: logit or probit

``predict_proba`` is the posterior predictive probability ``E_q[g^{-1}(eta)]`` (averaged
over the posterior, not ``g^{-1}`` of the mean ``eta``); ``predict`` the more probable
label; ``score`` the accuracy (scikit-learn's ``ClassifierMixin``).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted
from torch.distributions import Distribution

from noisybayes._checks import check_label_types
from noisybayes.engine.distributed import World
from noisybayes.engine.source import DataSource
from noisybayes.estimators._base import unfitted_on_error
from noisybayes.estimators._glm_model import GLMSpec
from noisybayes.estimators.glm import Approximation, GeneralizedLinearEstimator, check_link

__all__ = ["BayesianGLMClassifier"]


class BayesianGLMClassifier(ClassifierMixin, GeneralizedLinearEstimator):
    """Bayesian logistic (or probit) regression for two classes.

    Args:
        link: ``"logit"`` or ``"probit"``.
        fit_intercept: include an intercept (flat prior).
        prior_scale: sd of the Normal(0, ·) prior on each coefficient on the link scale;
            ``"auto"`` is ``2.5 / sd(x_j)``, ``None`` flat.
        group_prior: the prior of the sd of each group term's effects (formulas with
            ``(x | g)`` terms), a torch Distribution on ``(0, inf)`` on the linear predictor's
            scale; ``"auto"`` is ``HalfNormal(2.5 s / sd(z_j))`` with ``s = 1``.
        approximation: the variational family, ``nb.fit``'s ``family`` argument.
        seed, progress: passed to ``nb.fit``; ``fit_options``: a dict of its other
            arguments (``{"max_steps": 300}``).

    Fitted attributes: ``classes_`` (the two sorted labels; the model's ``y = 1`` is
    ``classes_[1]``), ``coef_`` (numpy), ``intercept_`` (float; posterior means,
    PSIS-corrected where the fit allowed it, on the link scale), ``link_``, ``posterior_``
    (an ``nb.Posterior``). ``predictive_draws`` and ``to_arviz`` speak the model's coding of
    held-out ``y``: 1 for ``classes_[1]``, else 0.

    ``fit(nb.data.Parquet(path, x=[...], y="label"))`` fits from a data source (numeric
    labels), as ``BayesianLinearRegression`` does; ``prior_scale=None`` is refused there
    (the check for separation needs all rows at once). ``from_formula("label ~ x1 + x2",
    table)`` takes the response column's labels as they are (strings, booleans, numbers).
    """

    formula_response = "labels"

    def __init__(
        self,
        link: Literal["logit", "probit"] = "logit",
        *,
        fit_intercept: bool = True,
        prior_scale: float | Literal["auto"] | None = "auto",
        group_prior: Distribution | Literal["auto"] = "auto",
        approximation: Approximation = "auto",
        seed: int | None = 0,
        progress: bool | None = None,
        fit_options: dict[str, Any] | None = None,
    ) -> None:
        self.link = link
        self.fit_intercept = fit_intercept
        self.prior_scale = prior_scale
        self.group_prior = group_prior
        self.approximation = approximation
        self.seed = seed
        self.progress = progress
        self.fit_options = fit_options

    @unfitted_on_error
    def fit(self, X: Any, y: Any = None) -> BayesianGLMClassifier:
        """Infer the posterior of ``(intercept, coef)`` from ``X`` ``(N, d)`` and two-class
        labels ``y`` ``(N,)``, or from a data source ``X`` (``nb.data.Parquet(path,
        x=[...], y="label")``, numeric labels) with ``y=None``, read in passes
        (``_streamed``)."""
        link = check_link("bernoulli", self.link)
        spec = GLMSpec("bernoulli", link, self.fit_intercept, self.prior_scale, None,
                       group_prior=self.group_prior)
        if isinstance(X, DataSource):
            self._fit_glm_source(spec, X, y, approximation=self.approximation)
            self.link_ = link
            return self
        world = World.current()
        with world.together():  # a process with bad rows stops them all
            X_a, labels = self._validate_xy(X, y, y_numeric=False)
            check_label_types("y", labels)
            check_classification_targets(labels)
            kind = type_of_target(labels, input_name="y", raise_unknown=True)
            if kind != "binary":
                raise ValueError(
                    f"Only binary classification is supported. The type of the target is {kind}."
                )
        self.classes_ = _classes_of_every_process(np.unique(labels), world)
        if len(self.classes_) != 2:
            raise ValueError(f"y must hold 2 classes, got {self.classes_.tolist()}")
        X_t, y_t = self._as_tensors(X_a, (labels == self.classes_[1]).astype(X_a.dtype))
        self._fit_glm(spec, X_t, y_t, approximation=self.approximation)
        self.link_ = link
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior predictive class probabilities ``(N, 2)``, columns as ``classes_``."""
        check_is_fitted(self, "posterior_")
        p = self.predict_distribution(X).mean.detach().to(torch.float64).numpy()
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any) -> np.ndarray:  # type: ignore[override]
        """The more probable label of each row, ``(N,)``."""
        probs = self.predict_proba(X)
        return self.classes_[(probs[:, 1] > 0.5).astype(int)]

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        assert tags.classifier_tags is not None  # set by ClassifierMixin
        tags.classifier_tags.multi_class = False
        return tags


def _classes_of_every_process(classes: np.ndarray, world: World) -> np.ndarray:
    """The sorted labels present on any process of a data-parallel fit, ``classes`` being
    this process's (themselves for one process); labels of different kinds on different
    processes (numbers on one, strings on another) are refused on every process."""
    if not world.parallel:
        return classes
    every = cast(list[np.ndarray], world.gathered(classes))
    kinds = sorted({c.dtype.kind for c in every if c.size})
    if len({kind in "USO" for kind in kinds}) > 1:  # text on some, numbers on others
        raise ValueError(
            f"y must hold labels of one kind on every process of a data-parallel fit, got "
            f"numpy dtype kinds {kinds} on the {world.size} processes")
    return np.unique(np.concatenate(every))
