"""Reference posteriors of three radon regressions by NumPyro NUTS, for tests/test_group_terms.py.

    python benchmarks/radon_reference.py            # writes tests/data/radon_nuts.json

The models are those of ``../shared/data/hierarchical/radon_mn/*.stan`` (Gelman & Hill 2007),
with the priors of the Stan files, written non-centred (the same posterior, sampled
without divergences):

    varying_intercept:  log_radon ~ floor + (1 | county)
    county_uranium:     log_radon ~ log_uppm + floor + (1 | county)
    varying_slope:      log_radon ~ floor + (floor | county)

    alpha_j = mu_alpha + a_j,  a_j ~ N(0, sigma_alpha);  (varying_slope) beta_j = mu_beta + b_j,
    b_j ~ N(0, sigma_beta);  sigma_y, sigma_alpha, sigma_beta ~ HalfNormal(1);
    mu_alpha, mu_beta, beta ~ N(0, 10)

Stored: the posterior mean and sd of every parameter (the county deviations ``a_j``, ``b_j``
from the population mean, as ``(1 | county)`` reports them), the run's settings, and its
largest R-hat and smallest bulk ESS (the run is refused unless R-hat < 1.01 and ESS > 2,000).
Needs the ``mcmc`` extra (NumPyro).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import summary
from numpyro.infer import MCMC, NUTS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "noisybayes" / "data" / "radon.csv"
OUT = ROOT / "tests" / "data" / "radon_nuts.json"
SETTINGS = dict(num_chains=4, num_warmup=2000, num_samples=5000, seed=2026, target_accept=0.9)


def radon_model(county, n_counties, floor, log_uppm, y, *, uranium: bool, slope: bool):
    """The Stan models' joint density, non-centred (see the module docstring)."""
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(1.0))
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0.0, 10.0))
    a = sigma_alpha * numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([n_counties]))
    numpyro.deterministic("a", a)
    mu = mu_alpha + a[county]
    if slope:
        sigma_beta = numpyro.sample("sigma_beta", dist.HalfNormal(1.0))
        mu_beta = numpyro.sample("mu_beta", dist.Normal(0.0, 10.0))
        b = sigma_beta * numpyro.sample("b_raw", dist.Normal(0.0, 1.0).expand([n_counties]))
        numpyro.deterministic("b", b)
        mu = mu + (mu_beta + b[county]) * floor
    else:
        mu = mu + numpyro.sample("beta_floor", dist.Normal(0.0, 10.0)) * floor
    if uranium:
        mu = mu + numpyro.sample("beta_uranium", dist.Normal(0.0, 10.0)) * log_uppm
    numpyro.sample("y", dist.Normal(mu, sigma_y), obs=y)


MODELS = {
    "varying_intercept": dict(uranium=False, slope=False),
    "county_uranium": dict(uranium=True, slope=False),
    "varying_slope": dict(uranium=False, slope=True),
}


def main() -> None:
    import pandas as pd

    numpyro.set_host_device_count(SETTINGS["num_chains"])
    jax.config.update("jax_enable_x64", True)
    table = pd.read_csv(DATA)
    county = jnp.asarray(table["county"].to_numpy() - 1)
    n_counties = int(table["county"].max())
    inputs = (county, n_counties, jnp.asarray(table["floor"].to_numpy(float)),
              jnp.asarray(table["log_uppm"].to_numpy(float)),
              jnp.asarray(table["log_radon"].to_numpy(float)))
    out = {"settings": {**SETTINGS, "sampler": f"numpyro {numpyro.__version__} NUTS",
                        "data": "src/noisybayes/data/radon.csv"}, "models": {}}
    print(f"{'model':20s} {'seconds':>8s} {'max R-hat':>10s} {'min bulk ESS':>13s}")
    for name, flags in MODELS.items():
        kernel = NUTS(lambda *a, flags=flags: radon_model(*a, **flags),
                      target_accept_prob=SETTINGS["target_accept"])
        mcmc = MCMC(kernel, num_warmup=SETTINGS["num_warmup"],
                    num_samples=SETTINGS["num_samples"], num_chains=SETTINGS["num_chains"],
                    chain_method="parallel", progress_bar=False)
        start = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(SETTINGS["seed"]), *inputs)
        seconds = time.perf_counter() - start
        draws = mcmc.get_samples(group_by_chain=True)
        kept = {k: np.asarray(v) for k, v in draws.items() if not k.endswith("_raw")}
        stats = summary(kept)
        r_hat = max(float(np.max(s["r_hat"])) for s in stats.values())
        ess = min(float(np.min(s["n_eff"])) for s in stats.values())
        print(f"{name:20s} {seconds:8.1f} {r_hat:10.4f} {ess:13.0f}")
        if r_hat >= 1.01 or ess <= 2000:
            sys.exit(f"{name}: the run is not a reference (R-hat {r_hat}, ESS {ess})")
        out["models"][name] = {
            "seconds": round(seconds, 1), "max_r_hat": r_hat, "min_bulk_ess": ess,
            "mean": {k: np.mean(v, axis=(0, 1)).tolist() for k, v in kept.items()},
            "sd": {k: np.std(v, axis=(0, 1), ddof=1).tolist() for k, v in kept.items()},
        }
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
