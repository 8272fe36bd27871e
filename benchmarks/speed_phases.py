"""Where ``nb.fit``'s time goes on linear 1,000,000 x 101, next to the exact solve.

The problem is ``speed.py``'s ``linear1m`` (known noise 1, prior N(0, 10^2), correlated
features, float32). In one process, warm, alternating ``--repeats`` times: the exact solve
(float64 Gram, the reference of ``speed.py``), the Laplace start alone (mode and curvature,
``noisybayes.infer.laplace``), the ``family="auto"`` k-hat check alone on the default fit
(``sequential_khat``, on the fit of the first window given), and the whole default fit with
the stochastic phase's ``window`` at the default (100) and shorter, after one untimed fit.
The table gives medians, the ratio to the exact solve's median and, for the fits, the
largest error of a mean (in posterior sds) and of an sd.

    python benchmarks/speed_phases.py
    python benchmarks/speed_phases.py --windows 100 25 --repeats 3
"""

from __future__ import annotations

import argparse
import inspect
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import TypeVar

import torch
from speed import errors, posterior_moments, problem

import noisybayes as nb
from noisybayes.infer.diagnostics import sequential_khat
from noisybayes.infer.laplace import laplace
from noisybayes.infer.objective import LogJoint
from noisybayes.model.layout import ParamLayout

T = TypeVar("T")
DEFAULT_WINDOW = inspect.signature(nb.fit).parameters["window"].default


def timed(run: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[DEFAULT_WINDOW, 50, 25])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    model, x, y, exact = problem("linear1m")
    layout = ParamLayout(model)
    log_joint = LogJoint(model, layout)
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {}
    accuracy: dict[str, tuple[float, float, int]] = {}
    exact_mean, exact_sd = exact()
    nb.fit(model, x, y, seed=0, progress=False, window=12)  # the first call's costs, untimed
    for _ in range(args.repeats):
        seconds, _ = timed(exact)
        times.setdefault("exact solve (float64 Gram)", []).append(seconds)
        seconds, _ = timed(lambda: laplace(log_joint, ((x,), y), torch.zeros(layout.size),
                                           generator, 50_000))
        times.setdefault("Laplace start (mode and curvature)", []).append(seconds)
        for window in args.windows:
            seconds, post = timed(partial(nb.fit, model, x, y, seed=0, progress=False,
                                          window=window))
            name = f"nb.fit, window {window}" + (" (default)" if window == DEFAULT_WINDOW else "")
            times.setdefault(name, []).append(seconds)
            accuracy[name] = (*errors(*posterior_moments(post), exact_mean, exact_sd),
                              post.info.n_steps)
            if window == args.windows[0]:
                checked = post
        seconds, _ = timed(partial(sequential_khat, checked, generator))
        times.setdefault(f"k-hat check alone (the window {args.windows[0]} fit)",
                         []).append(seconds)
    reference = statistics.median(times["exact solve (float64 Gram)"])
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
          f"{torch.get_num_threads()} torch threads; torch {torch.__version__}; "
          f"{x.shape[0]:,} x {x.shape[1]}, {args.repeats} repeats, warm\n")
    print("| phase | median s | range | x exact | Adam steps | max mean error (sd) | max sd error |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        z, r, steps = accuracy.get(name, (None, None, None))
        extra = "| - | - | - |" if z is None else f"| {steps} | {z:.4f} | {r:.4f} |"
        print(f"| {name} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | "
              f"{median / reference:.1f} {extra}")


if __name__ == "__main__":
    main()
