"""``noisybayes demo --layers``: run the layers demo, print its table and sentences, and
write the figure and the numbers when asked."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

import pandas as pd

from noisybayes.cli.demo_layers import run_layers_demo
from noisybayes.cli.output import print_table, write_json

__all__ = ["run_layers_command"]


def run_layers_command(args: argparse.Namespace) -> int:
    """Uses ``args.quick``, ``args.seed``, ``args.plot`` and ``args.json``; returns 0."""
    result = run_layers_demo(quick=args.quick, seed=args.seed)
    print("noisybayes demo --layers: one network trained with nothing, with dropout, with "
          f"noise added to its layers' outputs, and as a Bayesian network ({result.n_epochs} "
          f"full-batch epochs each, {len(result.x)} points, seed {args.seed})\n")
    rows = pd.DataFrame(
        [[f.rmse, f.gap_widening, f.coverage, f.seconds] for f in result.fits],
        index=[f.method for f in result.fits],
        columns=["RMSE to truth", "band gap/data", "coverage", "seconds"],
    )
    print_table(rows, sys.stdout)
    print()
    for line in result.sentences:
        print(f"- {line}")
    if args.plot is not None:
        from noisybayes.cli.demo_layers_plot import plot_layers_demo

        plot_layers_demo(result).savefig(args.plot, dpi=110)
        print(f"\nwrote the figure to {args.plot}")
    if args.json is not None:
        write_json(args.json, asdict(result))
        print(f"wrote the numbers to {args.json}")
    return 0
