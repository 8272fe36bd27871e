"""``noisybayes demo``: the claims it prints are true of the numbers it computes, and the
shipped example scripts are the code that runs."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from noisybayes.cli import seed_fixed, seed_original
from noisybayes.cli.main import main

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict, Path]:
    """One quick demo through the command line: its stdout, its JSON and its figure."""
    folder = tmp_path_factory.mktemp("demo")
    before = torch.get_num_threads()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--quick", "--json", str(folder / "demo.json"),
                     "--plot", str(folder / "demo.png")])
    torch.set_num_threads(before)
    assert code == 0
    text = (folder / "demo.json").read_text()
    assert "NaN" not in text  # strict JSON
    return buffer.getvalue(), json.loads(text), folder / "demo.png"


def test_seed_recipe_sds_collapse(quick_run):
    """The MSE recipe's slope sd falls by a large factor between the first and last reported
    epochs, at the rate its expected gradient 2 sd E[x^2] predicts (first 20 epochs, before
    gradient noise near zero takes over)."""
    out, record, _ = quick_run
    claims = record["claims"]
    reported = [s for s in record["seed_recipe"] if s["epoch"] in record["epochs"]]
    first, last = reported[0], reported[-1]
    factor = first["slope_scale"] / last["slope_scale"]
    assert factor > 50
    assert claims["seed_slope_sd_shrink_factor"] == pytest.approx(factor)
    assert f"fell by a factor of {factor:.0f} ({first['slope_scale']:.3g} -> " in out
    assert claims["seed_half_life_epochs_measured"] == pytest.approx(
        claims["seed_half_life_epochs_predicted"], rel=0.15
    )
    assert claims["seed_slope_sd_last_over_exact"] < 0.5
    assert claims["seed_intercept_sd_last_over_exact"] > 2


def test_fixed_version_matches_the_exact_posterior(quick_run):
    """The fixed code's slope and intercept sds within 10% of the exact posterior's."""
    out, record, _ = quick_run
    claims = record["claims"]
    methods = {m["method"]: m for m in record["methods"]}
    exact = methods["exact, noise unknown"]
    fixed = record["seed_fixed"][-1]
    assert fixed["slope_scale"] / exact["slope_scale"] == pytest.approx(1, abs=0.10)
    assert fixed["intercept_scale"] / exact["intercept_scale"] == pytest.approx(1, abs=0.10)
    ratio = claims["fixed_slope_sd_over_exact"]
    assert (
        f"its slope sd is {fixed['slope_scale']:.3g}, {100 * (ratio - 1):+.1f}% from the exact "
        "sd (within 10%)"
    ) in out


def test_exact_and_vi_rows_agree(quick_run):
    """Closed forms: the unknown-noise sd is sqrt(b / (a - 1) [Lambda^-1]_jj), recomputed here
    from ordinary least squares; nb.fit within 5% of it."""
    _, record, _ = quick_run
    methods = {m["method"]: m for m in record["methods"]}
    x, y = seed_original.make_data()
    X = torch.stack([torch.ones_like(x), x], 1).double()
    beta, *_ = torch.linalg.lstsq(X, y.double()[:, None])
    resid = y.double() - (X @ beta)[:, 0]
    n, p = X.shape
    a, b = (n - p - 1) / 2, 0.5 * float(resid @ resid)  # flat prior on (beta, sigma)
    cov = b / (a - 1) * torch.linalg.inv(X.T @ X)
    exact = methods["exact, noise unknown"]
    assert exact["slope_scale"] == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-6)
    assert exact["slope_loc"] == pytest.approx(float(beta[1]), rel=1e-9)
    for family in ("meanfield", "fullrank"):
        assert methods[f"nb.fit {family}"]["slope_scale"] / exact["slope_scale"] == pytest.approx(
            1, abs=0.05
        )


def test_output_names_every_method_and_the_mcmc_state(quick_run):
    out, record, _ = quick_run
    for method in record["methods"]:
        assert method["method"] in out
    if record["mcmc_available"]:
        assert "NUTS (NumPyro): slope sd" in out
    else:
        assert "MCMC skipped: NumPyro is not installed; to add it: pip install" in out


def test_demo_figure_is_drawn(quick_run):
    import matplotlib.image

    _, _, png = quick_run
    assert png.stat().st_size > 50_000
    pixels = matplotlib.image.imread(png)[..., :3]
    assert (pixels < 0.9).any(axis=-1).mean() > 0.05  # not blank: >5% of pixels are ink


@pytest.mark.parametrize("module", [seed_original, seed_fixed])
def test_examples_are_the_code_that_runs(module):
    """examples/seed_*.py is the library module itself (a link), runnable as a script."""
    name = Path(module.__file__).name
    assert (ROOT / "examples" / name).resolve().samefile(module.__file__)
    assert 'if __name__ == "__main__":' in Path(module.__file__).read_text()


def test_fixed_differs_from_the_seed_in_few_lines():
    """Below the module docstrings, the fix is a short diff (about 40 changed lines)."""
    import difflib

    def body(module) -> list[str]:
        text = Path(module.__file__).read_text()
        return text[text.index('"""', 3) + 3 :].splitlines()

    diff = difflib.unified_diff(body(seed_original), body(seed_fixed), lineterm="", n=0)
    changed = [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    assert 10 < len(changed) < 60


def test_the_figure_draws_the_exact_slope_density_from_its_closed_form():
    """The Student-t marginal (n - 3 degrees of freedom) integrates to 1 and has the sd of
    the library's exact flat-prior posterior; a band's coverage counts the points inside."""
    import numpy as np

    import noisybayes as nb
    from noisybayes.cli.demo_plot import _coverage, _exact_slope_density

    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, 300)
    y = 1 + 3 * x + 2 * rng.normal(size=300)
    exact = nb.BayesianLinearRegression(method="exact", prior_scale=None,
                                        noise_prior=None).fit(x[:, None], y)
    mean, sd = exact.summary().loc["coef[0]", ["mean", "sd"]]
    grid = np.linspace(mean - 12 * sd, mean + 12 * sd, 20_001)
    density = _exact_slope_density(x, y, grid)
    step = grid[1] - grid[0]
    assert abs(density.sum() * step - 1) < 1e-6
    moment = ((grid - mean) ** 2 * density).sum() * step
    assert abs(np.sqrt(moment) / sd - 1) < 1e-4
    grid_x = np.array([-5.0, 5.0])
    assert _coverage(x, y, grid_x, np.array([-1e9, -1e9]), np.array([1e9, 1e9])) == 1.0
    assert _coverage(x, y, grid_x, 1 + 3 * grid_x, 1 + 3 * grid_x + 1e9) == (y >= 1 + 3 * x).mean()
