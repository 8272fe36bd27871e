"""The ``noisybayes`` command: ``noisybayes demo`` and ``noisybayes fit data.csv --formula ...``.

A thin shell over the library: it parses arguments and calls ``run_demo`` or
``fit_command.run_fit``, which print. Bad input ends with one line on
stderr, ``noisybayes: error: ...``, and exit status 1 (2 for malformed arguments).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import torch
from torch.distributions import Distribution, Exponential, HalfCauchy, HalfNormal

from noisybayes.cli.fit_command import run_fit
from noisybayes.cli.output import check_outputs, print_table, write_json
from noisybayes.errors import DivergenceError

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

    force: dict[str, Any] = {
        "action": "store_true",
        "help": "replace output files that exist (never the tables read)",
    }

    demo = commands.add_parser(
        "demo", help="replay the seed's experiment against VI, the exact posterior and MCMC"
    )
    demo.add_argument("--plot", metavar="FILE", type=Path, help="write the figure (PNG)")
    demo.add_argument("--json", metavar="FILE", type=Path, help="write all numbers (JSON)")
    demo.add_argument("--force", **force)
    demo.add_argument("--quick", action="store_true",
                      help="100 epochs instead of 200 (with --layers: 300 instead of 2000)")
    demo.add_argument("--layers", action="store_true",
                      help="instead: one network trained with nothing, dropout, noise on its "
                      "layers' outputs and as a Bayesian network, on a nonlinear regression")
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
    fit.add_argument("--method", choices=("auto", "vi", "exact"), default="auto",
                     help="'exact' (Gaussian noise): closed form, or Gaussian given the noise "
                     "and group sds with those integrated on a grid; 'auto' (default): exact "
                     "where it applies unless --family, --max-steps or --reweight ask for vi")
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
    fit.add_argument("--force", **force)
    fit.add_argument("--reweight", action="store_true",
                     help="also print PSIS-corrected means and sds (Pareto smoothed importance "
                     "sampling) from fresh draws; with --family auto the summary is corrected "
                     "already where k-hat allows")
    fit.add_argument("--max-steps", type=_positive_int, default=None, metavar="N",
                     help="cap on optimisation steps (default 10,000)")
    fit.add_argument("--stream", action="store_true",
                     help="read the rows in passes (Parquet or CSV), never all in memory "
                     "unless they fit the fit's subsample (50,000 rows): the "
                     "formula's design is learned from a first chunk; rows with missing values "
                     "are an error; no --plot, --predict, --reweight or --json")
    fit.add_argument("--seed", type=int, default=0, help="fitting and checking seed (default 0)")
    fit.add_argument("--threads", **threads)
    return parser


def _demo(args: argparse.Namespace) -> int:
    check_outputs(args, {})  # before the run, which takes seconds to minutes
    if args.layers:
        from noisybayes.cli.demo_layers_command import run_layers_command

        return run_layers_command(args)
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
    print_table(rows, sys.stdout)
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
        write_json(args.json, result.to_json())
        print(f"wrote the numbers to {args.json}")
    print(f"done in {result.seconds:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"noisybayes: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return EXIT_USAGE
    torch.set_num_threads(args.threads)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.stream:
            from noisybayes.cli.fit_streamed import run_fit_streamed

            return run_fit_streamed(args)
        return run_fit(args)
    except (ValueError, TypeError, FileNotFoundError, DivergenceError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"noisybayes: error: {message}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
