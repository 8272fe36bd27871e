"""``noisybayes fit DATA --formula ... --stream``: the fit read from the files in passes.

The formula's design is learned from a first chunk of rows and applied chunk by chunk
(``noisybayes.tables.formula_source``); the estimator fits from that source
(``BayesianLinearRegression.fit(source)``), so no table is held in memory (beyond the fit's
subsample, which is all the rows of a file of at most 50,000: ``nb.fit``). What needs the
rows in memory is refused with the flag named: ``--plot``, ``--predict`` (and ``--out``),
``--reweight`` and ``--json``; rows with missing values are an error, not dropped.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

from noisybayes._progress import show_progress
from noisybayes.cli.fit_inputs import check_flags, estimator_method
from noisybayes.cli.output import print_table
from noisybayes.infer.diagnostics import USABLE

__all__ = ["run_fit_streamed"]

_IN_MEMORY_FLAGS = ("plot", "predict", "out", "reweight", "json")


def file_format(path: Path) -> Literal["parquet", "csv"]:
    """``"parquet"`` for ``.parquet``, ``.pq`` or a directory, ``"csv"`` for ``.csv``."""
    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    if path.suffix.lower() == ".csv":
        return "csv"
    raise ValueError(f"--stream reads .parquet, .pq, .csv files or a directory of Parquet "
                     f"files, got {str(path)!r}")


def run_fit_streamed(args: argparse.Namespace) -> int:
    """Check the flags, fit from the files, print the summary and how the fit ended."""
    for name in _IN_MEMORY_FLAGS:  # before the outputs' checks: these flags cannot run
        if getattr(args, name):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is not available with --stream: it needs the rows in "
                             "memory; fit without --stream for it")
    check_flags(args)
    from noisybayes.tables.formula_source import formula_source

    source = formula_source(args.data, args.formula, file_format=file_format(args.data))
    reg = _fit(args, source)
    info = reg.posterior_.info
    print(f"noisybayes fit: {args.formula}  [{args.likelihood} likelihood, {info.family}, "
          f"{args.data}, streamed]")
    print(f"rows: {source.n_data}, read from the files\n")
    print_table(reg.summary(), sys.stdout)
    status = "converged" if info.converged else "NOT converged"
    print(f"\nfit: {status} after {info.n_steps} steps in {info.seconds:.1f} s ({info.reason})")
    if info.khat is not None:
        print(f"check: Pareto k-hat {info.khat:.2f} from {info.khat_draws} draws, the log joint "
              "summed over all rows")
        if info.khat > USABLE:
            print(f"noisybayes: warning: Pareto k-hat {info.khat:.2f} > {USABLE}: do not trust "
                  f"the {info.family} approximation's means and sds", file=sys.stderr)
    return 0


def _fit(args: argparse.Namespace, source: Any) -> Any:
    """The estimator of ``--likelihood`` fitted from ``source``; ``nb.fit``'s own k-hat
    warning is left out, as the shell prints the k-hat once."""
    from noisybayes.estimators.linear import BayesianLinearRegression
    from noisybayes.estimators.robust import StudentTLinearRegression

    estimator = (
        StudentTLinearRegression if args.likelihood == "student_t" else BayesianLinearRegression
    )
    options = None if args.max_steps is None else {"max_steps": args.max_steps}
    reg = estimator(
        fit_intercept=source.spec.intercept, family=args.family, method=estimator_method(args),
        prior_scale=args.prior_scale, noise_prior=args.noise_prior, seed=args.seed,
        progress=show_progress(None), fit_options=options,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"nb\.fit\(family='auto'\)", category=UserWarning)
        return reg.fit(source)
