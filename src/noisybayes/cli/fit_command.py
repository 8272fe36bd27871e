"""``noisybayes fit``: Bayesian linear regression on a table, from the shell.

Everything the run reads or writes is checked first (``fit_inputs``); then the fit, its
check (computed once: the k-hat printed, warned about and written is one number), the
optional PSIS-corrected table, predictions, figure and JSON record (``fit_report``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from noisybayes import __version__
from noisybayes._checks import name_list
from noisybayes._progress import show_progress
from noisybayes.cli.fit_inputs import FitInputs, check_flags, estimator_method, read_inputs
from noisybayes.cli.fit_report import advice, predicted_quantity, priors
from noisybayes.cli.output import print_table, write_json
from noisybayes.infer.diagnostics import USABLE

__all__ = ["run_fit"]


def run_fit(args: argparse.Namespace) -> int:
    """Check every input and output, fit, then print (and write) what was found."""
    check_flags(args)
    inputs = read_inputs(args)
    reg = _fit_estimator(args, inputs.design)
    design, post = reg.design_, reg.posterior_
    if design.n_dropped:
        detail = name_list(f"{c}: {n}" for c, n in design.missing_by_column.items())
        print(f"noisybayes: warning: dropped {design.n_dropped} of {design.n_rows} rows with "
              f"missing values ({detail})", file=sys.stderr)
    n_used = design.n_rows - design.n_dropped
    print(f"noisybayes fit: {args.formula}  [{args.likelihood} likelihood, "
          f"{post.info.family}, {args.data}]")
    print(f"rows: {n_used} used of {design.n_rows} ({design.n_dropped} dropped for missing "
          "values)\n")
    summary = reg.summary()
    print_table(summary, sys.stdout)
    report = _check(post, args)
    _print_fit_info(post.info, report, args)
    reweighted = _reweighted(reg, report, args)
    if args.likelihood == "student_t":
        print("sigma is the Student-t scale; df its degrees of freedom")
    if inputs.new is not None:
        _predict(reg, inputs.new, inputs.new_design, inputs.table.columns, args)
    if args.plot is not None:
        _plot_fit(reg, design, args.plot)
        print(f"wrote the figure to {args.plot}")
    if args.json is not None:
        write_json(args.json, _fit_record(args, reg, inputs, summary, report, reweighted))
        print(f"wrote the results to {args.json}")
    return 0


def _fit_estimator(args: argparse.Namespace, design: Any) -> Any:
    """The estimator fitted to the checked inputs' design; ``nb.fit``'s own k-hat warning
    is left out, as the shell reports the k-hat of its check (one number, printed once)."""
    from noisybayes.estimators.linear import BayesianLinearRegression
    from noisybayes.estimators.robust import StudentTLinearRegression

    estimator = (
        StudentTLinearRegression if args.likelihood == "student_t" else BayesianLinearRegression
    )
    options = None if args.max_steps is None else {"max_steps": args.max_steps}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"nb\.fit\(family='auto'\)", category=UserWarning)
        return estimator.from_design(
            design, family=args.family, method=estimator_method(args),
            prior_scale=args.prior_scale, noise_prior=args.noise_prior, seed=args.seed,
            progress=show_progress(None), fit_options=options,
        )


def _print_fit_info(info: Any, report: Any, args: argparse.Namespace) -> None:
    """How the fit ended and, for a variational fit, its family and check; a warning on
    stderr when the check says not to trust it, with the k-hat of the same report."""
    status = "converged" if info.converged else "NOT converged"
    print(f"\nfit: {status} after {info.n_steps} steps in {info.seconds:.1f} s ({info.reason})")
    if report is None:
        return
    why = info.family_reason if args.family == "auto" else f"--family {args.family}"
    print(f"family: {info.family} ({why})")
    print(f"check: {report}".replace("\n", "\n       "))
    if report.reading == "do not trust":
        print(f"noisybayes: warning: Pareto k-hat {report.khat:.2f} > {USABLE}: do not trust "
              f"the {report.family} approximation's means and sds (see 'check')",
              file=sys.stderr)


def _check(post: Any, args: argparse.Namespace) -> Any:
    """The check of a variational fit (``None`` for the exact posterior), its advice in the
    shell's flags."""
    if post.info.family == "exact":
        return None
    report = post.check(seed=args.seed)
    return replace(report, recommendation=advice(report, args, post.importance is not None))


def _reweighted(reg: Any, report: Any, args: argparse.Namespace) -> pd.DataFrame | None:
    """With ``--reweight``, the PSIS-corrected means and sds, printed; from the same draws as
    ``report`` (the same seed), so both show one k-hat. ``None`` when the k-hat is above 0.7,
    where importance weights cannot correct the approximation."""
    if not args.reweight or report is None:
        return None
    if report.reading == "do not trust":
        print(f"\n--reweight: no PSIS-corrected table: Pareto k-hat {report.khat:.2f} > {USABLE}, "
              "too far from the posterior for importance weights to correct")
        return None
    table = reg.posterior_.reweighted(seed=args.seed).rename(index=reg.parameter_labels())
    print(f"\nPSIS-corrected (--reweight, Pareto k-hat {table.attrs['khat']:.2f}):")
    print_table(table, sys.stdout)
    return table


def _fit_record(
    args: argparse.Namespace, reg: Any, inputs: FitInputs, summary: pd.DataFrame, report: Any,
    reweighted: pd.DataFrame | None,
) -> dict[str, Any]:
    """Everything ``--json`` writes: the run, the priors, the posterior tables, the check."""
    design, info = reg.design_, reg.posterior_.info
    quantity, transformed = predicted_quantity(design.spec.response, inputs.table.columns)
    return {
        "noisybayes_version": __version__,
        "data": str(args.data), "formula": args.formula, "likelihood": args.likelihood,
        "family": info.family, "method": "exact" if info.family == "exact" else "vi", "seed": args.seed,
        "n_rows": design.n_rows, "n_used": design.n_rows - design.n_dropped,
        "n_dropped": design.n_dropped, "missing_by_column": design.missing_by_column,
        "priors": priors(reg),
        "summary": summary.to_dict(orient="index"),
        "summary_moments": "psis-corrected" if summary.attrs.get("khat") is not None else "q",
        "fit_khat": info.khat,
        "reweighted": None if reweighted is None else reweighted.to_dict(orient="index"),
        "fit": {"converged": info.converged, "reason": info.reason,
                "n_steps": info.n_steps, "seconds": info.seconds},
        "check": None if report is None else _check_record(report, reg.parameter_labels()),
        "predictions": {
            "file": None if args.predict is None else str(args.predict),
            "predicted_quantity": quantity, "transformed_response": transformed,
        },
    }


def _check_record(report: Any, renamed: dict[str, str]) -> dict[str, Any]:
    """The check report as plain data, its per-coordinate sd ratios keyed like the summary."""
    record = asdict(report)
    if record["sd_ratio"] is not None:
        record["sd_ratio"] = {renamed.get(k, k): v for k, v in record["sd_ratio"].items()}
    return record


def _predict(
    reg: Any, new: pd.DataFrame, design: Any, columns: Any, args: argparse.Namespace
) -> None:
    """Predictive mean, sd and 94% interval for each row of ``--predict`` (``new``, its
    ``design`` built and checked before the fit); CSV to ``--out``. The quantity predicted
    is the formula's left-hand side, named in a column and in what is printed; ``columns``,
    the data table's, say whether it is a transform."""
    quantity, transformed = predicted_quantity(reg.design_.spec.response, columns)
    if design.n_dropped:
        print(f"noisybayes: warning: dropped {design.n_dropped} of {design.n_rows} rows of "
              f"{args.predict} with missing values", file=sys.stderr)
    rows = new.loc[design.X.index]  # group terms read their columns from the raw rows
    pred = reg.predict_distribution(rows if design.spec.groups else design.X, level=0.94)
    out = rows.copy()
    for name, values in (("predicted_mean", pred.mean), ("predicted_sd", pred.sd),
                         ("predicted_3%", pred.lower), ("predicted_97%", pred.upper)):
        out[name] = values.detach().double().numpy()
    out["predicted_quantity"] = quantity
    scale = (f"on the scale of {quantity}, the formula's transformed response"
             if transformed else f"of {quantity}")
    if args.out is None:
        print(f"\npredictions {scale} for {args.predict} (94% predictive interval):")
        print_table(out, sys.stdout)
    else:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions {scale} to {args.out}")


def _plot_fit(reg: Any, design: Any, path: Path) -> None:
    from noisybayes.reports.plots import plot_fit

    kwargs: dict[str, Any] = {}
    one_line = not design.spec.groups and design.X.shape[1] == 1
    if one_line and design.spec.columns[0] in design.spec.variables:
        column = design.X.iloc[:, 0].to_numpy()
        grid = torch.linspace(float(column.min()), float(column.max()), 101, dtype=torch.float64)
        kwargs = {
            "x": column, "y": design.y.to_numpy(), "x_new": grid.numpy(),
            "prediction": reg.predict_distribution(
                pd.DataFrame({design.spec.columns[0]: grid.numpy()})
            ),
            "xlabel": design.spec.columns[0], "ylabel": design.spec.response,
        }
    plot_fit(reg, **kwargs).savefig(path, dpi=100)
