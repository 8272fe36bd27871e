"""Is the approximation trustworthy? Pareto k-hat of the importance ratios, and PSIS.

With draws ``theta_s ~ q`` the importance ratios ``r_s = p(theta_s, y) / q(theta_s)`` have a
right tail that a generalized Pareto fits; its shape ``k`` says how many finite moments they
have, hence whether ``q`` covers the posterior (Yao, Vehtari, Simpson & Gelman 2018, "Yes,
but did it work?"). Reading: ``k < 0.5`` good, ``0.5 <= k <= 0.7`` usable (PSIS-corrected
estimates are reliable), ``k > 0.7`` do not trust. The smoothing is ArviZ's ``psislw``
algorithm (Vehtari et al. 2024, "Pareto smoothed importance sampling"), in
:mod:`noisybayes.math.psis`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.func import vmap

from noisybayes._checks import check_positive_int
from noisybayes._rng import make_generator
from noisybayes.infer.data import Rows
from noisybayes.infer.laplace import whitening
from noisybayes.infer.objective import Data, batched_evaluation
from noisybayes.infer.reweighting import ImportanceDraws
from noisybayes.math.families import GaussianFamily
from noisybayes.math.psis import khat_standard_error, pareto_smoothed_log_weights

if TYPE_CHECKING:
    from noisybayes.infer.posterior import GaussianPosterior

__all__ = [
    "CheckReport",
    "KhatEstimate",
    "check",
    "default_draws",
    "sequential_khat",
    "importance_log_ratios",
    "pareto_khat",
    "ratios_at_fit_data",
    "reweighted",
]

Reading = Literal["good", "usable", "do not trust"]
GOOD, USABLE = 0.5, 0.7
# Elements of y times draws per chunk of rows: bounds the memory of the vmapped likelihood.
_CHUNK_ELEMENTS = 1 << 21
_DRAWS_MAX, _DRAWS_MIN, _DRAW_BUDGET = 100_000, 2_000, 40_000_000
_CHEAP_DRAW_ELEMENTS = 4_000_000  # draws x rows a usable fit's k-hat takes at any rate


@dataclass(frozen=True)
class CheckReport:
    """What :meth:`GaussianPosterior.check` found.

    Attributes:
        khat: Pareto shape of the importance ratios ``log p(theta, y) - log q(theta)``.
        reading: ``"good"`` (< 0.5), ``"usable"`` (0.5 to 0.7) or ``"do not trust"`` (> 0.7).
        n_draws: draws of ``q`` the ratios came from.
        family: the variational family (``"meanfield"``, ``"lowrank"``, ``"fullrank"``).
        converged: whether the optimisation stopped by its convergence test.
        convergence: how that was judged (the fit's stopping reason and the mode search).
        sd_ratio: per free coordinate, Laplace marginal sd ``sqrt(diag(H^{-1}))`` over the
            sd of ``q``: how many times the curvature at the mode says ``q``'s sds are too
            small (about 1 when ``q`` captures the correlations; ``None`` without curvature).
        recommendation: what to do, in plain words.
    """

    khat: float
    reading: Reading
    n_draws: int
    family: str
    converged: bool
    convergence: str
    sd_ratio: dict[str, float] | None
    recommendation: str

    @property
    def worst_sd_ratio(self) -> float | None:
        """The largest entry of ``sd_ratio``."""
        return max(self.sd_ratio.values()) if self.sd_ratio else None

    def __str__(self) -> str:
        lines = [
            f"Pareto k-hat {self.khat:.2f} ({self.reading}) from {self.n_draws} draws of the "
            f"{self.family} approximation",
            f"optimisation {'converged' if self.converged else 'did NOT converge'}: "
            f"{self.convergence}",
        ]
        if self.worst_sd_ratio is not None:
            lines.append(
                f"marginal sds understated by up to {self.worst_sd_ratio:.2f}x "
                "(Laplace curvature at the mode)"
            )
        lines.append(self.recommendation)
        return "\n".join(lines)


def reading(khat: float) -> Reading:
    """The usual reading of a Pareto k-hat: < 0.5 good, <= 0.7 usable, else do not trust."""
    if khat < GOOD:
        return "good"
    return "usable" if khat <= USABLE else "do not trust"


def pareto_khat(log_ratios: torch.Tensor) -> tuple[torch.Tensor, float]:
    """PSIS of ``log_ratios`` ``(S,)``: normalized smoothed log-weights and k-hat
    (:mod:`noisybayes.math.psis`)."""
    return pareto_smoothed_log_weights(log_ratios)


def _log_joint_chunked(post: GaussianPosterior, theta: torch.Tensor, rows: Rows) -> torch.Tensor:
    """``log p(theta_s, y)`` on all rows for each draw, summing row chunks of ``LogJoint``
    over one pass of ``rows`` (each chunk cut smaller to bound the draws x rows held).

    Each chunk's ``batched`` call (scale 1) carries the prior once; the extra copies are
    subtracted, so ``sum_k batched_k - (K - 1) log p(theta)`` is the full-data log joint.
    Over several processes (``rows.world``) each sums its rows and ``1 / W`` of the prior,
    and the sums are summed.
    """
    log_joint = post._log_joint
    with batched_evaluation():
        prior = vmap(log_joint.log_prior)(theta).double()
    total = prior * rows.world.share
    for xs, y in rows.passes():
        per_row = max(1, y[:1].numel())
        step = max(1, _CHUNK_ELEMENTS // (per_row * theta.shape[0]))
        for start in range(0, y.shape[0], step):
            part = tuple(x[start : start + step] for x in xs)
            total += log_joint.batched(theta, part, y[start : start + step], 1.0).double() - prior
    (total,) = rows.world.sum(total)
    return total


def importance_log_ratios(
    post: GaussianPosterior, data: Data | Rows, n_draws: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws ``theta`` ``(S, P)`` of ``q`` and ``log p(theta_s, y) - log q(theta_s)`` ``(S,)``
    (``data`` in memory, or :class:`~noisybayes.infer.data.Rows` read in one pass)."""
    family = post.family
    if not isinstance(family, GaussianFamily):
        raise TypeError(
            "the posterior must hold a Gaussian variational family to be checked, got "
            f"{type(family).__name__} (family {post.info.family!r})"
        )
    with torch.no_grad():
        draws = family.draw(n_draws, generator=generator)
        log_q = family.log_prob(draws).double()
        rows = data if isinstance(data, Rows) else Rows.in_memory(data)
        log_p = _log_joint_chunked(post, draws.theta, rows)
    return draws.theta, log_p - log_q


def _free_labels(post: GaussianPosterior) -> list[str]:
    """Labels of the unconstrained coordinates: the parameter's label when the transform
    keeps the shape, ``name~i`` otherwise (e.g. a simplex)."""
    labels: list[str] = []
    for block in post.layout.blocks:
        size = block.stop - block.start
        own = [lab for lab in post.layout.labels() if lab.split("[")[0] == block.name]
        if len(own) == size:
            labels.extend(own)
        else:
            labels.extend(f"{block.name}~{i}" for i in range(size))
    return labels


def sd_ratio(post: GaussianPosterior) -> dict[str, float] | None:
    """``sqrt(diag(H^{-1}))_j / sd_q(u_j)`` per free coordinate, from the stored Laplace
    curvature ``H`` (``None`` if the fit kept none)."""
    precision = post.info.laplace_precision
    if precision is None or not isinstance(post.family, GaussianFamily):
        return None
    factor, _ = whitening(precision, diagonal=False)
    laplace_sd = factor.double().pow(2).sum(-1).sqrt()
    q_sd = post.family.variance().detach().double().sqrt()
    ratio = (laplace_sd / q_sd).tolist()
    return dict(zip(_free_labels(post), ratio, strict=True))


def _recommend(khat: float, family: str, converged: bool, worst: float | None,
               corrected: bool = False) -> str:
    parts = []
    if khat > USABLE:
        if family != "fullrank":
            parts.append(
                f"Do not trust this fit: refit with family='fullrank' (or 'auto'); the "
                f"{family} approximation does not cover the posterior."
            )
        else:
            parts.append(
                "Do not trust this fit: the posterior is far from Gaussian (heavy tails, "
                "skew or several modes); reparameterise the model or use MCMC."
            )
    elif khat >= GOOD and corrected:
        parts.append("Usable: post.summary() is PSIS-corrected by the fit's k-hat draws.")
    elif khat >= GOOD:
        parts.append(
            "Usable: prefer post.reweighted() (PSIS-corrected means and sds) to post.summary()."
        )
    else:
        parts.append("Good: the approximation is close to the posterior.")
    if worst is not None and worst > 1.2 and family != "fullrank":
        parts.append(
            f"The curvature at the mode says marginal sds are up to {worst:.1f}x too small; "
            "family='fullrank' represents the correlations."
        )
    if not converged:
        parts.append("The optimisation did not converge: refit with a larger max_steps.")
    return " ".join(parts)


def default_draws(n_rows: int, floor: int = _DRAWS_MIN) -> int:
    """Draws of ``q`` for k-hat at a bounded cost: ``draws x rows <= 4e7``, clipped to
    ``[floor, 100,000]`` (``floor`` 2,000 by default). k-hat from fewer draws is noisy and
    biased upwards: a good full-rank fit of kilpisjarvi scored 0.40-0.61 from 20,000 draws,
    0.32-0.44 from 100,000."""
    return max(floor, min(_DRAWS_MAX, _DRAW_BUDGET // max(1, n_rows)))


@dataclass(frozen=True)
class KhatEstimate:
    """A Pareto k-hat, its standard error, the draws it took and those draws with their
    smoothed weights (``importance``, for the PSIS-corrected summaries)."""

    khat: float
    standard_error: float
    n_draws: int
    importance: ImportanceDraws


def sequential_khat(
    post: GaussianPosterior,
    generator: torch.Generator,
    start: int = 4_000,
    floor: int = 200,
    rows: Rows | None = None,
) -> KhatEstimate:
    """k-hat at the fit's data (or at ``rows``, one pass per batch of draws) from as few
    draws as the 0.7 line needs.

    Draws are added (doubling from ``start``, or from half the budget where the whole
    budget is too few draws to correct the summaries: large data, where each draw reads
    every row) until ``k + 2 se < 0.7`` (``se = (1 + k) / sqrt(M)``,
    :func:`~noisybayes.math.psis.khat_standard_error`) or the draws of
    :func:`default_draws` (with at least ``floor`` instead of 2,000) are spent. Only a
    clearly usable fit stops early: on few draws k-hat reads high by more than its standard
    error (a good fit of kilpisjarvi: 0.97 from 8,000 draws, 0.32-0.44 from 100,000), so a
    high reading is confirmed on the whole budget before it is reported. A usable fit takes
    more draws where they are cheap, up to ``cheap``: ``draws x rows <= 4e6`` and the draws
    the corrected summaries keep (:meth:`ImportanceDraws.kept`); their Monte Carlo error
    falls with them (mesquite's corrected sd of ``sigma`` scatters 3% from 4,000 draws and
    reads 3% low, 1.2% and unbiased from 64,000).
    """
    if rows is None:
        rows = Rows.in_memory(post.fit_data(None, None, caller="family='auto'"))
    most = default_draws(rows.n_elements, floor)
    cheap = min(most, ImportanceDraws.kept(post.layout.size),
                _CHEAP_DRAW_ELEMENTS // max(1, rows.n_elements))
    ratios = torch.zeros(0, dtype=torch.float64)
    kept: list[torch.Tensor] = []
    if most > start or ImportanceDraws.could_correct(most, post.layout.size):
        n_draws = min(start, most)
    else:  # large data: no correction within the budget, k-hat alone from half of it
        n_draws = max(floor, (most + 1) // 2)
    while True:
        theta, more = importance_log_ratios(post, rows, n_draws - ratios.numel(), generator)
        keep = ImportanceDraws.kept(theta.shape[1]) - ratios.numel()
        if keep > 0:
            kept.append(theta[:keep])
        ratios = torch.cat([ratios, more])
        log_weights, khat = pareto_khat(ratios)
        error = khat_standard_error(khat, n_draws)
        usable = khat + 2 * error < USABLE
        if n_draws >= most or (usable and n_draws >= cheap):
            draws = torch.cat(kept) if kept else theta[:0]
            importance = ImportanceDraws.from_log_weights(draws, log_weights, khat)
            return KhatEstimate(khat, error, n_draws, importance)
        n_draws = cheap if usable else min(2 * n_draws, most)


def ratios_at_fit_data(
    post: GaussianPosterior,
    x: Any = None,
    y: Any = None,
    n_draws: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    caller: str = "this method",
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`importance_log_ratios` at the fit's data (or ``x``, ``y``: the same number
    of rows as the fit's, whose posterior ``q`` approximates), with ``n_draws`` checked and,
    when ``None``, from :func:`default_draws`."""
    if n_draws is not None:
        n_draws = check_positive_int("n_draws", n_draws)
    data = post.fit_data(x, y, caller=caller)
    if data[1].shape[0] != post.info.n_data:
        raise ValueError(
            f"x and y must be the {post.info.n_data} rows the fit saw ({caller} weighs q "
            f"against their posterior; a data-parallel fit's are every process's), got "
            f"{data[1].shape[0]}")
    n_draws = n_draws or default_draws(data[1].numel())
    return importance_log_ratios(post, data, n_draws, make_generator(seed, generator))


def check(
    post: GaussianPosterior,
    x: Any = None,
    y: Any = None,
    *,
    n_draws: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> CheckReport:
    """Pareto k-hat of ``log p(theta, y) - log q(theta)`` over ``n_draws`` draws of ``q``
    (full-data likelihood, in row chunks), convergence and sd understatement.

    The cost is ``n_draws`` full-data likelihood evaluations (vectorised); by default
    :func:`default_draws`. Fewer than ~20,000 draws leave k-hat too noisy for the 0.7
    line: on near-Gaussian regression posteriors good full-rank fits scatter up to 0.9 at
    5,000 draws.
    """
    _, log_ratios = ratios_at_fit_data(post, x, y, n_draws, seed, generator, "check()")
    _, khat = pareto_khat(log_ratios)
    n_draws = len(log_ratios)
    info = post.info
    convergence = info.reason
    if info.n_steps:
        convergence += (
            f"; mode search {'converged' if info.laplace_converged else 'did not converge'}"
        )
    ratios = sd_ratio(post)
    worst = max(ratios.values()) if ratios else None
    return CheckReport(
        khat=khat,
        reading=reading(khat),
        n_draws=n_draws,
        family=info.family,
        converged=info.converged,
        convergence=convergence,
        sd_ratio=ratios,
        recommendation=_recommend(khat, info.family, info.converged, worst,
                                  post.importance is not None),
    )


def reweighted(
    post: GaussianPosterior,
    x: Any = None,
    y: Any = None,
    *,
    n_draws: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> pd.DataFrame:
    """PSIS-corrected posterior ``mean`` and ``sd`` per scalar parameter, constrained scale,
    from ``n_draws`` fresh draws (``reweighting.ImportanceDraws``: ``E_p[f] ≈ E_q[f] +
    sum_s (w_s - 1/S) f(theta_s)`` with Pareto-smoothed normalized weights ``w``, Vehtari et
    al. 2024); refused when k-hat > 0.7, where the weights are unreliable."""
    theta, log_ratios = ratios_at_fit_data(post, x, y, n_draws, seed, generator, "reweighted()")
    importance = ImportanceDraws.from_ratios(theta, log_ratios)
    if not importance.khat <= USABLE:
        raise ValueError(
            f"reweighted() needs Pareto k-hat <= {USABLE}, got {importance.khat:.2f} from "
            f"{len(log_ratios)} draws: the {post.info.family} approximation is too far from the "
            "posterior for importance weights to correct it; refit with family='fullrank'"
        )
    means, sds = post.corrected_moments(importance)
    table = pd.DataFrame(
        {"mean": post.flat(means).double().tolist(), "sd": post.flat(sds).double().tolist()},
        index=post.layout.labels(),
    )
    table.attrs["khat"] = importance.khat
    return table


def _wasserstein_1(a: np.ndarray, b: np.ndarray) -> float:
    """``W1 = ∫ |F_a(t) - F_b(t)| dt`` between two empirical distributions (Villani 2009)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.sort(np.concatenate([a, b]))
    widths = np.diff(grid)
    cdf_a = np.searchsorted(a, grid[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def _reference_columns(draws: Any) -> dict[str, np.ndarray]:
    if isinstance(draws, pd.DataFrame):
        return {str(c): draws[c].to_numpy(dtype=np.float64) for c in draws.columns}
    if isinstance(draws, dict):
        return {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in draws.items()}
    raise TypeError(
        f"draws must be a dict of name -> array or a pandas DataFrame, got {type(draws).__name__}"
    )


def compare(post: GaussianPosterior, draws: Any) -> pd.DataFrame:
    """``q`` against reference draws, one row per scalar parameter.

    Columns: ``z_mean = (mean_q - mean_ref) / sd_ref``, ``sd_ratio = sd_q / sd_ref`` and
    ``wasserstein``, the 1-Wasserstein distance between the marginals (``q`` from 10,000
    draws), in the parameter's units. ``draws`` maps the labels of ``post.summary()``
    (``beta[0]``, ``sigma``) to 1-D arrays of draws: a dict or a DataFrame.
    """
    reference = _reference_columns(draws)
    labels = post.layout.labels()
    unknown = sorted(set(reference) - set(labels))
    missing = [lab for lab in labels if lab not in reference]
    if unknown or missing:
        raise ValueError(
            f"draws must have one column per parameter label {labels}, got unknown "
            f"{unknown} and missing {missing}"
        )
    flat = [k for k, v in reference.items() if v.size < 2 or not v.std() > 0]
    if flat:
        raise ValueError(
            f"draws must hold at least 2 distinct finite values per column, got too few for {flat}"
        )
    q_mean, q_sd = post.flat(post.q_mean).double(), post.flat(post.q_sd).double()
    q_draws = post._summary_draws
    q_columns = torch.cat(
        [q_draws[n].reshape(q_draws[n].shape[0], -1).double() for n in post.layout.names], 1
    ).numpy()
    rows = []
    for j, label in enumerate(labels):
        ref = reference[label]
        ref_sd = float(ref.std(ddof=1))
        rows.append(
            {
                "z_mean": (float(q_mean[j]) - float(ref.mean())) / ref_sd,
                "sd_ratio": float(q_sd[j]) / ref_sd,
                "wasserstein": _wasserstein_1(q_columns[:, j], ref),
            }
        )
    return pd.DataFrame(rows, index=labels)
