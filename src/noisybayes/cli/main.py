"""The ``noisybayes`` command: ``noisybayes demo`` and ``noisybayes fit data.csv --formula ...``.

A thin shell over the library: it parses arguments, calls ``run_demo`` or
``BayesianLinearRegression.from_formula``, and prints. Bad input ends with one line on
stderr, ``noisybayes: error: ...``, and exit status 1 (2 for malformed arguments).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

import pandas as pd
import torch
from torch.distributions import Distribution, Exponential, HalfCauchy, HalfNormal

from noisybayes import __version__
from noisybayes._checks import name_list
from noisybayes._progress import show_progress
from noisybayes.cli.fit_inputs import FitInputs, check_flags, read_inputs
from noisybayes.cli.fit_report import advice, feature_labels, predicted_quantity, priors
from noisybayes.errors import DivergenceError
from noisybayes.infer.diagnostics import USABLE

__all__ = ["main"]

EXIT_INPUT = 1
EXIT_USAGE = 2
_NOISE_PRIORS = {"halfcauchy": HalfCauchy, "halfnormal": HalfNormal, "exponential": Exponential}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"noisybayes: error: {message} (see '{self.prog} --help')\n")


def _prior_scale(text: str) -> float | str | None:
    if text.lower() in ("auto",):
        return "auto"
    if text.lower() in ("none", "flat"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"--prior-scale must be 'auto', 'none' or a number > 0, got {text!r}"
        )
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--max-steps must be an integer >= 1, got {text!r}")
    return value


def _noise_prior(text: str) -> Distribution | str | None:
    lowered = text.lower()
    if lowered == "auto":
        return "auto"
    if lowered in ("none", "flat"):
        return None
    name, _, number = lowered.partition(":")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if name not in _NOISE_PRIORS or not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            "--noise-prior must be 'auto', 'none', 'halfcauchy:SCALE', 'halfnormal:SCALE' or "
            f"'exponential:RATE' with a number > 0, got {text!r}"
        )
    return _NOISE_PRIORS[name](torch.tensor(value, dtype=torch.float64))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``noisybayes`` command."""
    parser = _Parser(
        prog="noisybayes",
        description="Correct Bayesian inference by noise injection: the seed's experiment "
        "and Bayesian linear regression from a table.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    threads: dict[str, Any] = {
        "type": int,
        "default": 1,
        "help": "set torch's thread count for this process (torch.set_num_threads; default 1: "
        "small regressions run fastest on one); the library itself never changes it",
    }

    demo = commands.add_parser(
        "demo", help="replay the seed's experiment against VI, the exact posterior and MCMC"
    )
    demo.add_argument("--plot", metavar="FILE", type=Path, help="write the figure (PNG)")
    demo.add_argument("--json", metavar="FILE", type=Path, help="write all numbers (JSON)")
    demo.add_argument("--quick", action="store_true", help="100 epochs instead of 200")
    demo.add_argument("--no-mcmc", action="store_true", help="skip MCMC even if installed")
    demo.add_argument("--seed", type=int, default=0, help="data and fitting seed (default 0)")
    demo.add_argument("--threads", **threads)

    fit = commands.add_parser("fit", help="Bayesian linear regression on a CSV or Parquet table")
    fit.add_argument("data", type=Path, help="the table: .csv, .tsv, .txt or .parquet")
    fit.add_argument("--formula", required=True, help="e.g. 'y ~ x1 + C(group) + np.log(x2)'")
    fit.add_argument("--family", choices=("auto", "meanfield", "lowrank", "fullrank"),
                     default="auto", help="the variational family (default auto: chosen from "
                     "the parameter count and the Pareto k-hat diagnostic)")
    fit.add_argument("--likelihood", choices=("gaussian", "student_t"), default="gaussian",
                     help="the noise distribution (default gaussian)")
    fit.add_argument("--method", choices=("vi", "exact"), default="vi",
                     help="'exact': closed form, Gaussian noise and flat priors only")
    fit.add_argument("--prior-scale", type=_prior_scale, default="auto", metavar="S",
                     help="coefficient prior Normal(0, S); 'auto' (2.5 sd(y)/sd(x)) or 'none' "
                     "(flat)")
    fit.add_argument("--noise-prior", type=_noise_prior, default="auto", metavar="P",
                     help="'auto' (Exponential(1/sd(y))), 'none' (flat), 'halfcauchy:S', "
                     "'halfnormal:S' or 'exponential:RATE'")
    fit.add_argument("--missing", choices=("drop", "error"), default="drop",
                     help="rows with missing values: drop them (default) or stop")
    fit.add_argument("--plot", metavar="FILE", type=Path, help="write a figure of the fit (PNG)")
    fit.add_argument("--json", metavar="FILE", type=Path, help="write the results (JSON)")
    fit.add_argument("--predict", metavar="FILE", type=Path, help="a table of new rows")
    fit.add_argument("--out", metavar="FILE", type=Path,
                     help="where --predict writes its CSV (default: print it)")
    fit.add_argument("--reweight", action="store_true",
                     help="also print PSIS-corrected means and sds (Pareto smoothed importance "
                     "sampling; for a 'usable' check, k-hat 0.5 to 0.7)")
    fit.add_argument("--max-steps", type=_positive_int, default=None, metavar="N",
                     help="cap on optimisation steps (default 10,000)")
    fit.add_argument("--seed", type=int, default=0, help="fitting and checking seed (default 0)")
    fit.add_argument("--threads", **threads)
    return parser


def _print_table(frame: pd.DataFrame, out: TextIO, title: str | None = None) -> None:
    """``frame`` as a rich table on a terminal, as plain aligned text otherwise."""
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        table.add_column("")
        for col in frame.columns:
            table.add_column(str(col), justify="right")
        for idx, row in frame.iterrows():
            table.add_row(str(idx), *(_fmt(v) for v in row))
        Console(file=out).print(table)
        return
    if title:
        print(title, file=out)
    print(frame.to_string(float_format=_fmt, na_rep=""), file=out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _demo(args: argparse.Namespace) -> int:
    from noisybayes.cli.demo import TRUTH, run_demo

    result = run_demo(quick=args.quick, seed=args.seed, mcmc=not args.no_mcmc)
    print("noisybayes demo: the seed's noise-injection recipe against variational inference, "
          "the exact posterior and MCMC")
    print(f"data: {len(result.x)} points, y = {TRUTH['intercept']:g} + {TRUTH['slope']:g} x + "
          f"{TRUTH['noise_scale']:g} eps, x ~ U(-5, 5), seed {args.seed}\n")
    rows = pd.DataFrame(
        [[m.slope_loc, m.slope_scale, m.intercept_loc, m.intercept_scale, m.noise_scale,
          m.seconds] for m in result.methods],
        index=[m.method for m in result.methods],
        columns=["slope", "slope sd", "intercept", "intercept sd", "noise sd", "seconds"],
    )
    _print_table(rows, sys.stdout)
    print("\nWhat the seed's method computes:")
    for line in result.explanation:
        print(f"- {line}")
    for note in result.notes:
        print(f"\n{note}")
    if args.plot is not None:
        from noisybayes.cli.demo_plot import plot_demo

        plot_demo(result).savefig(args.plot, dpi=110)
        print(f"\nwrote the figure to {args.plot}")
    if args.json is not None:
        _write_json(args.json, result.to_json())
        print(f"wrote the numbers to {args.json}")
    print(f"done in {result.seconds:.1f} s")
    return 0


def _write_json(path: Path, record: Any) -> None:
    """``record`` as strict JSON: NaN and infinities become ``null``."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(record), indent=2, allow_nan=False))


def _fit(args: argparse.Namespace) -> int:
    """Check every input and output, fit, then print (and write) what was found."""
    check_flags(args)
    inputs = read_inputs(args)
    reg = _fit_estimator(args, inputs.table)
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
    _print_table(summary, sys.stdout)
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
        _write_json(args.json, _fit_record(args, reg, inputs, summary, report, reweighted))
        print(f"wrote the results to {args.json}")
    return 0


def _fit_estimator(args: argparse.Namespace, table: pd.DataFrame) -> Any:
    """The fitted estimator; ``nb.fit``'s own k-hat warning is left out, as the shell
    reports the k-hat of its check (one number, printed once)."""
    from noisybayes.estimators.linear import BayesianLinearRegression
    from noisybayes.estimators.robust import StudentTLinearRegression

    estimator = (
        StudentTLinearRegression if args.likelihood == "student_t" else BayesianLinearRegression
    )
    options = None if args.max_steps is None else {"max_steps": args.max_steps}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"nb\.fit\(family='auto'\)", category=UserWarning)
        return estimator.from_formula(
            args.formula, table, missing=args.missing, family=args.family, method=args.method,
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
    if args.method != "vi":
        return None
    report = post.check(seed=args.seed)
    return replace(report, recommendation=advice(report, args))


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
    table = reg.posterior_.reweighted(seed=args.seed).rename(index=feature_labels(reg))
    print(f"\nPSIS-corrected (--reweight, Pareto k-hat {table.attrs['khat']:.2f}):")
    _print_table(table, sys.stdout)
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
        "family": info.family, "method": args.method, "seed": args.seed,
        "n_rows": design.n_rows, "n_used": design.n_rows - design.n_dropped,
        "n_dropped": design.n_dropped, "missing_by_column": design.missing_by_column,
        "priors": priors(reg),
        "summary": summary.to_dict(orient="index"),
        "reweighted": None if reweighted is None else reweighted.to_dict(orient="index"),
        "fit": {"converged": info.converged, "reason": info.reason,
                "n_steps": info.n_steps, "seconds": info.seconds},
        "check": None if report is None else asdict(report),
        "predictions": {
            "file": None if args.predict is None else str(args.predict),
            "predicted_quantity": quantity, "transformed_response": transformed,
        },
    }


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
    pred = reg.predict_distribution(design.X, level=0.94)
    out = new.loc[design.X.index].copy()
    for name, values in (("predicted_mean", pred.mean), ("predicted_sd", pred.sd),
                         ("predicted_3%", pred.lower), ("predicted_97%", pred.upper)):
        out[name] = values.detach().double().numpy()
    out["predicted_quantity"] = quantity
    scale = (f"on the scale of {quantity}, the formula's transformed response"
             if transformed else f"of {quantity}")
    if args.out is None:
        print(f"\npredictions {scale} for {args.predict} (94% predictive interval):")
        _print_table(out, sys.stdout)
    else:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions {scale} to {args.out}")


def _plot_fit(reg: Any, design: Any, path: Path) -> None:
    from noisybayes.reports.plots import plot_fit

    kwargs: dict[str, Any] = {}
    if design.X.shape[1] == 1 and design.spec.columns[0] in design.spec.variables:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"noisybayes: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return EXIT_USAGE
    torch.set_num_threads(args.threads)
    try:
        return _demo(args) if args.command == "demo" else _fit(args)
    except (ValueError, TypeError, FileNotFoundError, DivergenceError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"noisybayes: error: {message}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
