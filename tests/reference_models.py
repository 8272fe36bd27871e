"""The five posteriordb regression posteriors written as ``nb.Model``s, with their data
and reference draws (Stan NUTS, 10,000 draws)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.distributions import HalfCauchy, HalfNormal, Normal

import noisybayes as nb

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POSTERIORDB = SHARED_DATA / "posteriordb"
NAMES = [
    "kidiq-kidscore_momiq",
    "earnings-logearn_height",
    "mesquite-logmesquite",
    "sblrc-blr",
    "kilpisjarvi_mod-kilpisjarvi",
]


class Regression(nb.Model):
    """``y ~ Normal(X @ beta, sigma)``; ``beta`` and ``sigma`` priors as given (None: flat)."""

    def __init__(self, n_coef: int, beta_prior=None, sigma_prior=None) -> None:
        super().__init__()
        self.beta = nb.param(beta_prior, shape=(n_coef,))
        self.sigma = nb.param(sigma_prior, support=torch.distributions.constraints.positive)

    def forward(self, X: torch.Tensor) -> Normal:
        return Normal(X @ self.beta, self.sigma)


class Kilpisjarvi(nb.Model):
    """``y ~ Normal(alpha + beta * x, sigma)`` with Normal priors and a flat ``sigma``."""

    def __init__(self, pmualpha: float, psalpha: float, pmubeta: float, psbeta: float) -> None:
        super().__init__()
        self.alpha = nb.param(Normal(torch.tensor(pmualpha, dtype=torch.float64), psalpha))
        self.beta = nb.param(Normal(torch.tensor(pmubeta, dtype=torch.float64), psbeta))
        self.sigma = nb.param(None, support=torch.distributions.constraints.positive)

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(self.alpha + self.beta * x, self.sigma)


@dataclass
class Reference:
    name: str
    model: nb.Model
    x: torch.Tensor
    y: torch.Tensor
    draws: pd.DataFrame  # columns named as our labels: beta[0], sigma, ...

    def column(self, label: str) -> torch.Tensor:
        return torch.tensor(self.draws[label].to_numpy())


def _design(*columns) -> torch.Tensor:
    return torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in columns], dim=1)


def load(name: str) -> Reference:
    """The model, data and reference draws of one posterior (skips if the data is absent)."""
    folder = POSTERIORDB / name
    if not folder.exists():
        pytest.skip(f"reference posteriors not found at {folder} (../shared/data is absent)")
    data = json.loads((folder / "data.json").read_text())
    draws = pd.read_csv(folder / "reference_draws.csv").drop(columns="chain")
    f64 = torch.float64
    ones = [1.0] * int(data["N"])
    model: nb.Model
    if name == "kidiq-kidscore_momiq":
        x = _design(ones, data["mom_iq"])
        y = torch.tensor(data["kid_score"], dtype=f64)
        model = Regression(2, None, HalfCauchy(torch.tensor(2.5, dtype=f64)))
    elif name == "earnings-logearn_height":
        x = _design(ones, data["height"])
        y = torch.log(torch.tensor(data["earn"], dtype=f64))
        model = Regression(2)
    elif name == "mesquite-logmesquite":
        log = lambda k: torch.log(torch.tensor(data[k], dtype=f64))  # noqa: E731
        x = _design(
            ones,
            log("diam1"),
            log("diam2"),
            log("canopy_height"),
            log("total_height"),
            log("density"),
            data["group"],
        )
        y = log("weight")
        model = Regression(7)
    elif name == "sblrc-blr":
        x = torch.tensor(data["X"], dtype=f64)
        y = torch.tensor(data["y"], dtype=f64)
        model = Regression(
            5, Normal(torch.tensor(0.0, dtype=f64), 10.0), HalfNormal(torch.tensor(10.0, dtype=f64))
        )
    elif name == "kilpisjarvi_mod-kilpisjarvi":
        x = torch.tensor(data["x"], dtype=f64)
        y = torch.tensor(data["y"], dtype=f64)
        model = Kilpisjarvi(data["pmualpha"], data["psalpha"], data["pmubeta"], data["psbeta"])
    else:
        raise KeyError(name)
    renamed = {c: _label(c) for c in draws.columns}
    return Reference(name, model, x, y, draws.rename(columns=renamed))


def _label(column: str) -> str:
    """Stan's 1-based ``beta[1]`` is our 0-based ``beta[0]``."""
    if "[" not in column:
        return column
    base, index = column.rstrip("]").split("[")
    return f"{base}[{int(index) - 1}]"


EIGHT_SCHOOLS = "eight_schools-eight_schools_noncentered"


class EightSchools(nb.Model):
    """``y_j ~ Normal(theta_j, sigma_j)``, ``theta_j ~ Normal(mu, tau)``, ``mu ~ Normal(0, 5)``,
    ``tau ~ HalfCauchy(5)``; ``centred`` as in ``nb.param``."""

    def __init__(self, n_schools: int, centred: bool | None = None) -> None:
        super().__init__()
        f64 = torch.float64
        self.mu = nb.param(Normal(torch.tensor(0.0, dtype=f64), 5.0))
        self.tau = nb.param(HalfCauchy(torch.tensor(5.0, dtype=f64)))
        self.theta = nb.param(lambda m: Normal(m.mu, m.tau), shape=(n_schools,), centred=centred)

    def forward(self, sigma: torch.Tensor) -> Normal:
        return Normal(self.theta, sigma)


def load_eight_schools(centred: bool | None = None) -> Reference:
    """Eight schools (Rubin 1981) with a dependent prior; ``x`` holds the known ``sigma_j``.
    The reference draws are of the centred ``theta`` (skips if the data is absent)."""
    folder = POSTERIORDB / EIGHT_SCHOOLS
    if not folder.exists():
        pytest.skip(f"reference posteriors not found at {folder} (../shared/data is absent)")
    data = json.loads((folder / "data.json").read_text())
    draws = pd.read_csv(folder / "reference_draws.csv").drop(columns="chain")
    x = torch.tensor(data["sigma"], dtype=torch.float64)
    y = torch.tensor(data["y"], dtype=torch.float64)
    model = EightSchools(int(data["J"]), centred)
    renamed = {c: _label(c) for c in draws.columns}
    return Reference(EIGHT_SCHOOLS, model, x, y, draws.rename(columns=renamed))
