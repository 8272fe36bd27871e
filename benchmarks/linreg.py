"""Linear-regression benchmark: noisybayes VI against the exact conjugate posterior.

Problems (known noise 1, prior N(0, 10^2), features with pairwise correlation 0.5, float32):
N=100,000 x d=20 and N=1,000,000 x d=100. For each, one fresh process per method reports
the wall time, the time until the fit is within 0.1 posterior sd on every mean and within
10% on every sd (mean-field: of its own optimum 1/sqrt(Lambda_jj)), the final errors, and the
rise of the peak resident memory during the solve or fit, as a multiple of the data's size.

    python benchmarks/linreg.py            # both sizes
    python benchmarks/linreg.py --small    # N=100,000 only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.distributions import Normal

import noisybayes as nb
from noisybayes.math import NormalPosterior

SIZES = {"small": (100_000, 20), "large": (1_000_000, 100)}
METHODS = ("exact", "fullrank", "meanfield", "pyro-fullrank")
PYRO_STEPS, PYRO_BATCH = 5000, 4096


class KnownNoiseLinear(nb.Model):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.beta = nb.param(Normal(0.0, 10.0), shape=(d,))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(x @ self.beta, 1.0)


def make_data(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cov = 0.5 * torch.ones(d, d) + 0.5 * torch.eye(d)
    x = torch.randn(n, d, generator=g) @ torch.linalg.cholesky(cov).T
    y = x @ torch.randn(d, generator=g) + torch.randn(n, generator=g)
    return x, y


def exact_posterior(x: torch.Tensor, y: torch.Tensor, chunk: int = 100_000):
    """The closed form, accumulating X^T X and X^T y in float64 over row chunks."""
    d = x.shape[1]
    gram = torch.zeros(d, d, dtype=torch.float64)
    xty = torch.zeros(d, dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        xc, yc = x[start : start + chunk].double(), y[start : start + chunk].double()
        gram += xc.T @ xc
        xty += xc.T @ yc
    precision = gram + torch.eye(d, dtype=torch.float64) / 100.0
    loc = torch.cholesky_solve(xty[:, None], torch.linalg.cholesky(precision))[:, 0]
    return NormalPosterior(loc=loc, precision=precision)


def status_bytes(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of this process, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_rss() -> int:
    """Reset the peak-RSS mark (Linux) and return the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")


def run_one(size: str, method: str) -> dict:
    """Runs in its own process so that the peak memory is this method's alone."""
    n, d = SIZES[size]
    x, y = make_data(n, d)
    data_bytes = x.numel() * x.element_size() + y.numel() * y.element_size()
    before = reset_peak_rss()
    started = time.perf_counter()
    exact = exact_posterior(x, y)
    exact_seconds = time.perf_counter() - started
    if method == "exact":
        extra = status_bytes("VmHWM") - before
        return {"seconds": exact_seconds, "extra_memory": extra, "data_bytes": data_bytes}
    reference_sd = exact.scale if method == "fullrank" else exact.meanfield_scale

    def errors(family) -> tuple[float, float]:
        mean = family.mean().double()
        sd = family.variance().double().sqrt()
        z = float(((mean - exact.loc) / exact.scale).abs().max())
        return z, float((sd / reference_sd - 1).abs().max())

    if method == "pyro-fullrank":
        return run_pyro(x, y, exact, data_bytes)
    reached: list[float] = []

    def callback(state: nb.FitState) -> None:
        z, r = errors(state.family)
        if not reached and z < 0.1 and r < 0.1:
            reached.append(time.perf_counter() - started)

    before = reset_peak_rss()
    started = time.perf_counter()
    post = nb.fit(
        KnownNoiseLinear(d), x, y, family=method, seed=0, progress=False, callback=callback
    )
    seconds = time.perf_counter() - started
    extra = status_bytes("VmHWM") - before
    z, r = errors(post.family)
    return {
        "seconds": seconds,
        "seconds_to_accuracy": reached[0] if reached else None,
        "mean_error_sd": z,
        "sd_error": r,
        "steps": post.info.n_steps,
        "extra_memory": extra,
        "data_bytes": data_bytes,
    }


def run_pyro(x: torch.Tensor, y: torch.Tensor, exact, data_bytes: int) -> dict:
    """Pyro's documented minibatch recipe: a full-rank ``AutoMultivariateNormal`` guide,
    ``Trace_ELBO``, ``pyro.plate(..., subsample_size=B)`` and ``ClippedAdam`` with its
    learning rate decayed 100-fold over the run."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoMultivariateNormal

    n, d = x.shape

    def model(x: torch.Tensor, y: torch.Tensor) -> None:
        beta = pyro.sample("beta", dist.Normal(torch.zeros(d), 10.0).to_event(1))
        with pyro.plate("data", n, subsample_size=PYRO_BATCH) as index:
            pyro.sample("y", dist.Normal(x[index] @ beta, 1.0), obs=y[index])

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoMultivariateNormal(model)
    optimizer = pyro.optim.ClippedAdam({"lr": 0.01, "lrd": 0.01 ** (1 / PYRO_STEPS)})
    svi = SVI(model, guide, optimizer, Trace_ELBO())

    def errors() -> tuple[float, float]:
        with torch.no_grad():
            posterior = guide.get_posterior()
            mean = posterior.mean.double()
            sd = posterior.covariance_matrix.diagonal().double().sqrt()
        return (
            float(((mean - exact.loc) / exact.scale).abs().max()),
            float((sd / exact.scale - 1).abs().max()),
        )

    reached: list[float] = []
    before = reset_peak_rss()
    started = time.perf_counter()
    for step in range(1, PYRO_STEPS + 1):
        svi.step(x, y)
        if not reached and step % 250 == 0 and max(errors()) < 0.1:
            reached.append(time.perf_counter() - started)
    seconds = time.perf_counter() - started
    extra = status_bytes("VmHWM") - before
    z, r = errors()
    return {
        "seconds": seconds,
        "seconds_to_accuracy": reached[0] if reached else None,
        "mean_error_sd": z,
        "sd_error": r,
        "steps": PYRO_STEPS,
        "extra_memory": extra,
        "data_bytes": data_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="only N=100,000, d=20")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    sizes = ["small"] if args.small else ["small", "large"]
    print(
        f"# {platform.node()} {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )
    header = (
        "| N x d | method | wall s | s to 0.1 sd & 10% | x exact | max mean err (sd) "
        "| max sd err | steps | extra peak memory / data |"
    )
    print(header)
    print("|---" * 9 + "|")
    for size in sizes:
        n, d = SIZES[size]
        results = {}
        for method in METHODS:
            if method.startswith("pyro") and importlib.util.find_spec("pyro") is None:
                continue  # the peer is optional: pip install pyro-ppl
            out = subprocess.run(
                [sys.executable, __file__, "--one", size, method],
                capture_output=True,
                text=True,
                check=True,
            )
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        exact_s = results["exact"]["seconds"]
        for method in results:
            r = results[method]
            memory = r["extra_memory"] / r["data_bytes"]
            if method == "exact":
                print(
                    f"| {n:,} x {d} | exact (float64 Gram) | {exact_s:.2f} | - | 1.0 | 0 | 0 | - "
                    f"| {memory:.1f} |"
                )
                continue
            to_acc = r["seconds_to_accuracy"]
            to_acc_s = f"{to_acc:.2f}" if to_acc is not None else "not reached"
            print(
                f"| {n:,} x {d} | {method} | {r['seconds']:.2f} | {to_acc_s} "
                f"| {r['seconds'] / exact_s:.1f} | {r['mean_error_sd']:.3f} | {r['sd_error']:.3f} "
                f"| {r['steps']} | {memory:.1f} |"
            )


if __name__ == "__main__":
    main()
