"""What ``noisybayes fit`` reports about a fit, in the shell's words: the advice that goes
with a check (naming flags, not Python calls), the priors as they were resolved, and the
record ``--json`` writes.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.distributions import Distribution

from noisybayes.infer.diagnostics import GOOD, USABLE, CheckReport

__all__ = ["advice", "priors", "predicted_quantity"]

_UNDERSTATED = 1.2  # worst sd ratio above which a cheaper family's sds are called too small


def _exact_hint(args: argparse.Namespace) -> str | None:
    """``--method exact`` where it answers: Gaussian noise only."""
    if args.likelihood != "gaussian":
        return None
    return "--method exact gives this posterior exactly, with no approximation."


def advice(report: CheckReport, args: argparse.Namespace, corrected: bool = False) -> str:
    """What to do after ``report``, in flags of ``noisybayes fit``; ``corrected``: the
    summary printed is PSIS-corrected already."""
    parts = []
    if report.khat > USABLE:
        if report.family != "fullrank":
            parts.append(
                f"Do not trust this fit: the {report.family} approximation does not cover the "
                "posterior; rerun with --family fullrank."
            )
        else:
            parts.append(
                "Do not trust this fit: the posterior is far from Gaussian (heavy tails, skew "
                "or several modes); transform skewed columns in --formula (e.g. np.log(x)) or "
                "use MCMC."
            )
    elif report.khat >= GOOD:
        if args.reweight:
            parts.append("Usable: the PSIS-corrected means and sds above (--reweight) are the "
                         "better summary.")
        elif corrected:
            parts.append("Usable: the summary above is PSIS-corrected, the better summary.")
        else:
            parts.append("Usable: rerun with --reweight for PSIS-corrected means and sds.")
    else:
        parts.append("Good: the approximation is close to the posterior.")
    worst = report.worst_sd_ratio
    if worst is not None and worst > _UNDERSTATED and report.family != "fullrank":
        parts.append(
            f"The curvature at the mode says marginal sds are up to {worst:.1f}x too small; "
            "--family fullrank represents the correlations."
        )
    if not report.converged:
        steps = args.max_steps or 10_000
        parts.append(
            f"The optimisation did not converge: rerun with --max-steps larger than {steps:,}."
        )
    hint = _exact_hint(args)
    if report.khat >= GOOD and hint is not None:
        parts.append(hint)
    return " ".join(parts)


def _describe(prior: Any, index: int | None) -> Any:
    """One parameter's prior as plain data: ``"flat"``, ``"conditional"`` (built from other
    parameters, a group's effects) or the distribution's name and its arguments (element
    ``index`` of a vector prior)."""
    if prior is None:
        return "flat"
    if not isinstance(prior, Distribution):
        return "conditional"
    record: dict[str, Any] = {"distribution": type(prior).__name__}
    for name in prior.arg_constraints:
        value = getattr(prior, name, None)
        if isinstance(value, torch.Tensor):
            value = value.reshape(-1)[index or 0] if value.numel() > 1 else value.reshape(())
            record[name] = float(value)
    return record


def priors(reg: Any) -> dict[str, Any]:
    """The prior of every scalar parameter as resolved for the fit, on the user's scale
    (``"auto"`` turned into numbers), keyed as in the summary."""
    renamed = reg.parameter_labels()
    model = reg.posterior_.model
    record: dict[str, Any] = {}
    for label in reg.posterior_.layout.labels():
        name, _, rest = label.partition("[")
        index = int(rest.rstrip("]")) if rest and "," not in rest else None
        record[renamed.get(label, label)] = _describe(model.param_specs[name].prior, index)
    return record


def predicted_quantity(response: str, table_columns: Any) -> tuple[str, bool]:
    """The quantity ``--predict`` predicts, the formula's left-hand side, and whether it is
    a transform of a column (``np.log1p(y)``) rather than the column itself."""
    return response, response not in set(map(str, table_columns))
