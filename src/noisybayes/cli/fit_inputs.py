"""What ``noisybayes fit`` checks before it fits: every path it will read or write, the
flags that must go together, and every column the formula needs in each table.

A fit can take minutes; a missing folder for ``--json`` or an unknown column in the
``--predict`` table must stop the run at once, with the flag named, not after the fit.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import pandas as pd

from noisybayes.cli.output import check_outputs

__all__ = ["FitInputs", "check_flags", "read_inputs"]


@dataclass(frozen=True)
class FitInputs:
    """The tables of one ``noisybayes fit`` run, checked before the fit.

    ``design`` is the formula's design of ``table`` (its ``spec`` builds new rows);
    ``new`` the ``--predict`` rows as read and ``new_design`` their design (``None``
    without ``--predict``).
    """

    table: pd.DataFrame
    design: Any
    new: pd.DataFrame | None
    new_design: Any


def check_flags(args: argparse.Namespace) -> None:
    """Raise for flags that cannot work together or outputs that cannot be written."""
    if args.out is not None and args.predict is None:
        raise ValueError("--out needs --predict FILE, the table of rows to predict")
    if args.method == "exact":
        if args.likelihood != "gaussian":
            raise ValueError(
                f"--method exact needs --likelihood gaussian (the {args.likelihood} "
                f"likelihood has no closed form), got --likelihood {args.likelihood}"
            )
        if args.reweight:
            raise ValueError("--reweight needs --method vi: the exact posterior needs no correction")
        if args.family != "auto":
            raise ValueError(f"--family {args.family} needs --method vi: the exact posterior has "
                             f"no variational family")
        if args.max_steps is not None:
            raise ValueError("--max-steps needs --method vi: the exact posterior takes no steps")
    check_outputs(args, {"data": args.data, "--predict": args.predict})


def estimator_method(args: argparse.Namespace) -> Any:
    """The estimator's ``method`` for the flags: ``--method``, but ``vi`` for ``auto`` with
    the Student-t likelihood (which has only that) or ``--reweight`` (which corrects a
    variational fit); the estimator's ``auto`` takes ``--family`` and ``--max-steps`` to
    ask for VI too."""
    variational = args.likelihood == "student_t" or args.reweight
    return "vi" if args.method == "auto" and variational else args.method


def read_inputs(args: argparse.Namespace) -> FitInputs:
    """The data table and its design, and the ``--predict`` rows and their design: every
    column the formula reads is checked in both tables, and errors about the ``--predict``
    table name the flag."""
    from noisybayes.tables.data_io import read_table
    from noisybayes.tables.formula import design_matrices

    table = read_table(args.data)
    design = design_matrices(args.formula, table, missing=args.missing)
    if args.predict is None:
        return FitInputs(table, design, None, None)
    try:
        new = read_table(args.predict)
        new_design = design.spec.transform(new, missing=args.missing)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"--predict: {error}") from None
    return FitInputs(table, design, new, new_design)
