"""Speed at the defaults: ``nb.fit`` next to the exact or Laplace answer and NumPyro.

Each row is a fresh process; its time is the fit's, first call in the process included
(the imports are not). ``noisybayes`` runs with its defaults (``family="auto"``, the k-hat
check included); "1 thread" is the same with ``torch.set_num_threads(1)``, "solver adam"
with ``solver="adam"`` (the stochastic path, the default before the fixed-draw solver). Problems:

- ``seed``: the seed question's line, y = 1 + 2x + 0.5 eps, 1,000 rows; alpha, beta ~
  N(0, 10^2), sigma ~ HalfCauchy(2.5). Reference: quadrature over sigma (Gaussian in
  (alpha, beta) given sigma).
- ``diabetes``: scikit-learn's diabetes (442 x 10) through ``BayesianLinearRegression()``
  (its default ``method="auto"``: the exact posterior, the noise sd on a grid), with
  ``method="vi"`` (``nb.fit``) and with ``fit_options={"solver": "adam"}``. Accuracy against
  ``method="exact"`` (which the default is: its rows say so instead); times next to the
  flat-prior closed form (``method="exact",
  prior_scale=None, noise_prior=None``: the reference time) and scikit-learn's
  ``BayesianRidge``.
- ``linear100k``, ``linear1m``: 100,000 x 21 and 1,000,000 x 101, known noise 1, prior
  N(0, 10^2), correlated features (``linreg.py``'s problem). Reference: exact (float64 Gram).
- ``logistic50k``: 50,000 x 21 Bernoulli-logit with N(0, 10^2) priors. Reference: Laplace
  (float64 Newton), within a fraction of 0.1 sd of the posterior at this size.

NumPyro (optional: ``pip install 'noisybayes[bench]'``; skipped with a note when absent)
runs its documented SVI recipe, a full-rank ``AutoMultivariateNormal`` guide with
``Trace_ELBO`` and Adam with an exponentially decaying step, full batch, for up to 60 s; the time until its means are within
0.1 sd and its sds within 10% of the reference is reported, JIT compilation included.

    python benchmarks/speed.py                 # every problem
    python benchmarks/speed.py --problems seed diabetes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import subprocess
import sys
import time

import torch
from linreg import KnownNoiseLinear, exact_posterior, make_data
from torch.distributions import Bernoulli, HalfCauchy, Normal

import noisybayes as nb

PROBLEMS = ("seed", "diabetes", "linear100k", "logistic50k", "linear1m")
METHODS = ("reference", "noisybayes", "noisybayes 1 thread", "solver adam", "numpyro")
PEER_SECONDS = 60.0
PRIOR_SD = 10.0


class Line(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nb.param(Normal(0.0, PRIOR_SD))
        self.beta = nb.param(Normal(0.0, PRIOR_SD))
        self.sigma = nb.param(HalfCauchy(2.5))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(self.alpha + x[:, 0] * self.beta, self.sigma)


class Logistic(nb.Model):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.beta = nb.param(Normal(0.0, PRIOR_SD), shape=(d,))

    def forward(self, x: torch.Tensor) -> Bernoulli:
        return Bernoulli(logits=x @ self.beta)


def seed_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 1, generator=g)
    return x, 1.0 + 2.0 * x[:, 0] + 0.5 * torch.randn(1000, generator=g)


def logistic_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.ones(50_000, 1), torch.randn(50_000, 20, generator=g)], dim=1)
    logits = x @ (0.3 * torch.randn(21, generator=g))
    return x, torch.bernoulli(torch.sigmoid(logits), generator=g)


def seed_reference(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and sds of (alpha, beta, sigma) by quadrature over log sigma: given
    sigma, (alpha, beta) is Gaussian with a closed-form marginal likelihood."""
    design = torch.cat([torch.ones_like(x), x], dim=1).double()
    yd = y.double()
    log_sigma = torch.linspace(math.log(0.3), math.log(0.8), 4001, dtype=torch.float64)
    s2 = torch.exp(2 * log_sigma)[:, None, None]
    gram, xty, yty = design.T @ design, design.T @ yd, yd @ yd
    precision = gram / s2 + torch.eye(2, dtype=torch.float64) / PRIOR_SD**2
    c = torch.linalg.inv(precision)
    m = torch.einsum("sij,j->si", c, xty) / s2[:, 0]
    s2 = s2[:, 0, 0]
    log_ml = (-0.5 * len(yd) * torch.log(2 * math.pi * s2) - 0.5 * yty / s2
              + 0.5 * torch.einsum("si,sij,sj->s", m, precision, m)
              - 0.5 * torch.logdet(precision) - 2 * math.log(PRIOR_SD))
    log_prior = HalfCauchy(2.5).log_prob(s2.sqrt()) + log_sigma  # Jacobian of log sigma
    log_w = log_ml + log_prior
    w = torch.softmax(log_w, 0)
    coef_mean = w @ m
    coef_var = (w[:, None] * (c.diagonal(dim1=1, dim2=2) + m**2)).sum(0) - coef_mean**2
    sigma = log_sigma.exp()
    sigma_mean = w @ sigma
    sigma_sd = (w @ sigma**2 - sigma_mean**2).sqrt()
    return (torch.cat([coef_mean, sigma_mean[None]]),
            torch.cat([coef_var.sqrt(), sigma_sd[None]]))


def laplace_reference(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mode and inverse-Hessian sds of the logistic posterior by float64 Newton steps."""
    xd, yd = x.double(), y.double()
    beta = torch.zeros(x.shape[1], dtype=torch.float64)
    for _ in range(50):
        p = torch.sigmoid(xd @ beta)
        grad = xd.T @ (yd - p) - beta / PRIOR_SD**2
        hess = (xd * (p * (1 - p))[:, None]).T @ xd + torch.eye(len(beta)) / PRIOR_SD**2
        step = torch.linalg.solve(hess, grad)
        beta = beta + step
        if float(step.abs().max()) < 1e-12:
            break
    return beta, torch.linalg.inv(hess).diagonal().sqrt()


def problem(name: str):
    """``(model, x, y, reference_fn)``: ``reference_fn()`` gives the (mean, sd) to match."""
    if name == "seed":
        x, y = seed_data()
        return Line(), x, y, lambda: seed_reference(x, y)
    if name == "logistic50k":
        x, y = logistic_data()
        return Logistic(x.shape[1]), x, y, lambda: laplace_reference(x, y)
    n, d = {"linear100k": (100_000, 21), "linear1m": (1_000_000, 101)}[name]
    x, y = make_data(n, d)

    def exact():
        post = exact_posterior(x, y)
        return post.loc, post.scale

    return KnownNoiseLinear(d), x, y, exact


def posterior_moments(post) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and sds of every scalar parameter, constrained scale, in the layout's order."""
    table = post.summary()
    return (torch.tensor(table["mean"].to_numpy(), dtype=torch.float64),
            torch.tensor(table["sd"].to_numpy(), dtype=torch.float64))


def errors(mean, sd, ref_mean, ref_sd) -> tuple[float, float]:
    z = float(((mean.double() - ref_mean) / ref_sd).abs().max())
    return z, float((sd.double() / ref_sd - 1).abs().max())


def run_one(name: str, method: str) -> dict:
    if name == "diabetes":
        return run_diabetes(method)
    model, x, y, reference = problem(name)
    if method == "reference":
        started = time.perf_counter()
        reference()
        return {"seconds": time.perf_counter() - started}
    ref_mean, ref_sd = reference()
    if method == "numpyro":
        return run_numpyro(name, x, y, ref_mean, ref_sd)
    options = {"solver": "adam"} if method == "solver adam" else {}
    if method == "noisybayes 1 thread":
        torch.set_num_threads(1)
    started = time.perf_counter()
    post = nb.fit(model, x, y, seed=0, progress=False, **options)
    seconds = time.perf_counter() - started
    z, r = errors(*posterior_moments(post), ref_mean, ref_sd)
    return {"seconds": seconds, "mean_error_sd": z, "sd_error": r, "solver": post.info.solver,
            "khat": post.info.khat, "khat_draws": post.info.khat_draws,
            "note": post.info.reason}


def run_diabetes(method: str) -> dict:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import BayesianRidge

    x, y = load_diabetes(return_X_y=True)
    make = {
        "noisybayes": nb.BayesianLinearRegression,
        "noisybayes 1 thread": nb.BayesianLinearRegression,
        "vi": lambda: nb.BayesianLinearRegression(method="vi"),
        "solver adam": lambda: nb.BayesianLinearRegression(fit_options={"solver": "adam"}),
        "exact": lambda: nb.BayesianLinearRegression(method="exact", prior_scale=None,
                                                     noise_prior=None),
        "sklearn BayesianRidge": BayesianRidge,
    }[method]
    if method == "noisybayes 1 thread":
        torch.set_num_threads(1)
    started = time.perf_counter()
    reg = make().fit(x, y)
    seconds = time.perf_counter() - started
    if method in ("exact", "sklearn BayesianRidge"):
        return {"seconds": seconds}
    if reg.posterior_.info.family == "exact":  # the default: the reference posterior itself
        return {"seconds": seconds, "is_reference": True}
    ref = nb.BayesianLinearRegression(method="exact").fit(x, y)
    z, r = errors(*posterior_moments(reg.posterior_), *posterior_moments(ref.posterior_))
    return {"seconds": seconds, "mean_error_sd": z, "sd_error": r,
            "solver": reg.posterior_.info.solver, "khat": reg.posterior_.info.khat,
            "khat_draws": reg.posterior_.info.khat_draws}


def run_numpyro(name: str, x, y, ref_mean, ref_sd) -> dict:
    """NumPyro's SVI recipe (full-rank guide, Trace_ELBO, Adam from 1e-2 decaying
    1000-fold over 10,000 steps), checked every 250 steps against the reference, for at
    most ``PEER_SECONDS``."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())

    def model(x, y):
        if name == "seed":
            alpha = numpyro.sample("alpha", dist.Normal(0.0, PRIOR_SD))
            beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD))
            sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
            numpyro.sample("y", dist.Normal(alpha + x[:, 0] * beta, sigma), obs=y)
            return
        beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD).expand([x.shape[1]]).to_event(1))
        if name == "logistic50k":
            numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)
        else:
            numpyro.sample("y", dist.Normal(x @ beta, 1.0), obs=y)

    guide = AutoMultivariateNormal(model)
    decay = 1e-3 ** (1 / 10_000)  # the step size falls from 1e-2 to 1e-5 over 10,000 steps
    optimizer = numpyro.optim.Adam(lambda i: 1e-2 * decay**i)
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    started = time.perf_counter()
    state = svi.init(jax.random.PRNGKey(0), xj, yj)
    step = jax.jit(lambda s: svi.update(s, xj, yj)[0])
    steps, reached, z, r = 0, None, math.inf, math.inf
    while time.perf_counter() - started < PEER_SECONDS:
        for _ in range(250):
            state = step(state)
        jax.block_until_ready(state)
        steps += 250
        elapsed = time.perf_counter() - started
        draws = guide.sample_posterior(jax.random.PRNGKey(1), svi.get_params(state),
                                       sample_shape=(4000,))
        columns = [np.asarray(draws[k]).reshape(4000, -1) for k in ("alpha", "beta", "sigma")
                   if k in draws]
        sample = torch.from_numpy(np.concatenate(columns, axis=1)).double()
        z, r = errors(sample.mean(0), sample.std(0), ref_mean, ref_sd)
        if z < 0.1 and r < 0.1:
            reached = elapsed
            break
    return {"seconds": time.perf_counter() - started, "seconds_to_accuracy": reached,
            "mean_error_sd": z, "sd_error": r, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS))
    parser.add_argument("--one", nargs=2, metavar=("PROBLEM", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    has_numpyro = importlib.util.find_spec("numpyro") is not None
    print(f"# {platform.node()} {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    if not has_numpyro:
        print("# NumPyro is not installed (pip install 'noisybayes[bench]'): its rows are skipped")
    print("| problem | method | wall s | x reference | s to 0.1 sd & 10% | max mean err (sd) "
          "| max sd err | notes |")
    print("|---" * 8 + "|")
    for name in args.problems:
        methods = list(METHODS)
        if name == "diabetes":
            methods = ["exact", "noisybayes", "noisybayes 1 thread", "vi", "solver adam",
                       "sklearn BayesianRidge"]
        elif not has_numpyro:
            methods.remove("numpyro")
        reference_seconds = None
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--one", name, method],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            reference_seconds = reference_seconds or r["seconds"]
            reach = r.get("seconds_to_accuracy", r["seconds"] if "mean_error_sd" in r else None)
            reach_s = "-" if "mean_error_sd" not in r else (
                "not reached" if reach is None else f"{reach:.2f}")
            z = f"{r['mean_error_sd']:.3f}" if "mean_error_sd" in r else "-"
            sd = f"{r['sd_error']:.3f}" if "sd_error" in r else "-"
            notes = []
            if "solver" in r:
                khat = "" if r["khat"] is None else f", k-hat {r['khat']:.2f} ({r['khat_draws']} draws)"
                notes.append(f"{r['solver']}{khat}")
            if "steps" in r:
                notes.append(f"{r['steps']} steps")
            if r.get("is_reference"):
                notes.append("exact: the accuracy reference itself")
            print(f"| {name} | {method} | {r['seconds']:.2f} | "
                  f"{r['seconds'] / reference_seconds:.1f} | {reach_s} | {z} | {sd} | "
                  f"{'; '.join(notes)} |", flush=True)


if __name__ == "__main__":
    main()
