"""Radon hierarchical regressions: noisybayes's estimator with a group term against NumPyro NUTS.

    python benchmarks/hierarchical.py [varying_intercept county_uranium varying_slope]

Each fit runs in a fresh process (imports, compilation and first-call costs included), with
the defaults a user gets: ``BayesianLinearRegression.from_formula`` with the Stan files'
priors (``method="auto"``: exact, the scales integrated on a grid), the same with
``method="vi"`` (``nb.fit``), and NUTS with 4 chains of 1,000 warm-up and 1,000 draws
(chains in parallel, one per core as NumPyro runs them). "fit s" is the time of the fit
alone (after the imports), "NUTS / nb" the ratios of the fit times and of the whole times.
Accuracy is against the long NUTS reference of ``tests/data/radon_nuts.json``: the largest
error of a posterior mean in reference sds, and the range of sd ratios, over the population
parameters and the county effects.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "tests" / "data" / "radon_nuts.json"
FORMULAS = {
    "varying_intercept": "log_radon ~ floor + (1 | county)",
    "county_uranium": "log_radon ~ log_uppm + floor + (1 | county)",
    "varying_slope": "log_radon ~ floor + (floor | county)",
}

NOISYBAYES = """
import json, sys, time
start = time.perf_counter()
import pandas as pd, torch
from torch.distributions import HalfNormal
import noisybayes as nb
one = HalfNormal(torch.tensor(1.0, dtype=torch.float64))
table = pd.read_csv(nb.example_path("radon"))
fit_start = time.perf_counter()
reg = nb.BayesianLinearRegression.from_formula(
    sys.argv[1], table, prior_scale=10.0, noise_prior=one, group_prior=one, method=sys.argv[2])
seconds = time.perf_counter() - start
mean, sd, cols = reg.posterior_.mean, reg.posterior_.sd, list(reg.feature_names_in_)
out = {"seconds": seconds, "fit_seconds": time.perf_counter() - fit_start,
       "khat": reg.posterior_.info.khat,
       "mu_alpha": [float(mean["intercept"]), float(sd["intercept"])],
       "sigma_y": [float(mean["sigma"]), float(sd["sigma"])],
       "sigma_alpha": [float(mean["county_sd"][0]), float(sd["county_sd"][0])],
       "a": [mean["county_effect"][:-1, 0].tolist(), sd["county_effect"][:-1, 0].tolist()]}
floor = cols.index("floor")
out["mu_beta" if "(floor" in sys.argv[1] else "beta_floor"] = [
    float(mean["coef"][floor]), float(sd["coef"][floor])]
if "log_uppm" in cols:
    i = cols.index("log_uppm")
    out["beta_uranium"] = [float(mean["coef"][i]), float(sd["coef"][i])]
if "(floor" in sys.argv[1]:
    out["sigma_beta"] = [float(mean["county_sd"][1]), float(sd["county_sd"][1])]
    out["b"] = [mean["county_effect"][:-1, 1].tolist(), sd["county_effect"][:-1, 1].tolist()]
print(json.dumps(out))
"""

NUTS = """
import json, sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[2])
import jax, numpy as np, pandas as pd, numpyro
numpyro.set_host_device_count(4)
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from numpyro.infer import MCMC, NUTS
from radon_reference import DATA, MODELS, radon_model
table = pd.read_csv(DATA)
inputs = (jnp.asarray(table["county"].to_numpy() - 1), int(table["county"].max()),
          jnp.asarray(table["floor"].to_numpy(float)), jnp.asarray(table["log_uppm"].to_numpy(float)),
          jnp.asarray(table["log_radon"].to_numpy(float)))
flags = MODELS[sys.argv[1]]
fit_start = time.perf_counter()
mcmc = MCMC(NUTS(lambda *a: radon_model(*a, **flags)), num_warmup=1000, num_samples=1000,
            num_chains=4, chain_method="parallel", progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), *inputs)
draws = {k: np.asarray(v) for k, v in mcmc.get_samples().items() if not k.endswith("_raw")}
out = {"seconds": time.perf_counter() - start, "fit_seconds": time.perf_counter() - fit_start}
out |= {k: [v.mean(0).tolist(), v.std(0, ddof=1).tolist()] for k, v in draws.items()}
print(json.dumps(out))
"""


LIMIT = 300  # seconds a fit may take before its row says it did not finish


def run(code: str, *args: str) -> dict | None:
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=LIMIT)
    except subprocess.TimeoutExpired:
        print(f"{args[:2]}: did not finish in {LIMIT} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(done.stderr.strip().splitlines()[-1], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def accuracy(result: dict, reference: dict) -> tuple[float, float, float]:
    """The largest |mean error| in reference sds, and the smallest and largest sd ratio."""
    import numpy as np

    worst, low, high = 0.0, np.inf, 0.0
    for key, (mean, sd) in result.items():
        if key not in reference["mean"]:
            continue
        ref_mean, ref_sd = np.asarray(reference["mean"][key]), np.asarray(reference["sd"][key])
        worst = max(worst, float(np.max(np.abs((np.asarray(mean) - ref_mean) / ref_sd))))
        ratio = np.asarray(sd) / ref_sd
        low, high = min(low, float(np.min(ratio))), max(high, float(np.max(ratio)))
    return worst, low, high


def main() -> None:
    try:
        import numpyro  # noqa: F401
        have_nuts = True
    except ImportError:
        have_nuts = False
        print("NumPyro is not installed (pip install 'noisybayes[bench]'): NUTS rows skipped")
    reference = json.loads(REFERENCE.read_text())["models"]
    print(f"{'model':18s} {'method':14s} {'seconds':>8s} {'fit s':>6s} {'max |z| mean':>13s} "
          f"{'sd ratio':>13s} {'k-hat':>6s} {'NUTS / nb: fit, total':>22s}")
    names = sys.argv[1:] or list(FORMULAS)
    for name in names:
        formula = FORMULAS[name]
        results = {"noisybayes": run(NOISYBAYES, formula, "auto"),
                   "noisybayes vi": run(NOISYBAYES, formula, "vi"),
                   "NUTS 4x1000": run(NUTS, name, str(HERE)) if have_nuts else None}
        seconds = {k: (r.pop("seconds"), r.pop("fit_seconds"))
                   for k, r in results.items() if r is not None}
        nuts = seconds.get("NUTS 4x1000")
        for method, result in results.items():
            if result is None:
                continue
            khat = result.pop("khat", None)
            worst, low, high = accuracy(result, reference[name])
            total, fit = seconds[method]
            ratio = "" if nuts is None or method.startswith("NUTS") else (
                f"{nuts[1] / fit:.1f}, {nuts[0] / total:.1f}")
            print(f"{name:18s} {method:14s} {total:8.1f} {fit:6.1f} {worst:13.3f} "
                  f"{low:6.2f}-{high:<6.2f} {'' if khat is None else f'{khat:.2f}':>6s} "
                  f"{ratio:>22s}")

if __name__ == "__main__":
    main()
