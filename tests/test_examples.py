"""The scripts in ``examples/`` run as a user would run them and say what they promise.

Each runs in a fresh interpreter with one torch thread (as the suite does, see conftest).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str) -> str:
    """Run ``examples/<name>``; fail with its output unless it exits with 0."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_custom_model_recovers_its_coefficients():
    out = run_example("custom_model.py")
    assert "Pareto k-hat" in out and "predicted count at x = [2.0, -2.0]" in out
    beta = re.search(r"^beta\[0\]\s+(\S+)\s+(\S+)", out, re.MULTILINE)
    assert beta is not None
    mean, sd = float(beta[1]), float(beta[2])
    assert abs(mean - 0.5) < 4 * sd  # the simulation's true value, within 4 posterior sds


@pytest.mark.slow
def test_network_loop_is_less_certain_outside_the_data():
    out = run_example("network_loop.py")
    sds = {
        where: [float(sd) for sd in re.findall(rf"\({where}\s+the data\): .* sd (\S+) ", out)]
        for where in ("inside", "outside")
    }
    assert len(sds["inside"]) == 3 and len(sds["outside"]) == 2, out
    assert min(sds["outside"]) > 2 * max(sds["inside"]), out


@pytest.mark.slow
def test_estimators_report_held_out_calibration():
    out = run_example("estimators.py")
    assert "95% predictive intervals cover" in out
    assert "held-out accuracy" in out and "Brier score" in out


@pytest.mark.slow
def test_distributed_fit_under_torchrun_agrees_between_processes():
    """Two processes started by ``torchrun`` end with identical means, and recover the
    simulation's coefficients (20,000 rows: posterior sds about 0.02) within 4 sds."""
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", str(EXAMPLES / "distributed_fit.py")],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "2 process(es), 20000 rows in all" in out, out
    assert "largest difference of the means between processes: 0\n" in out, out
    true = {"alpha": -0.5, "beta[0]": 1.0, "beta[1]": -1.0, "beta[2]": 0.5, "beta[3]": 0.0,
            "beta[4]": 0.0}
    found = {m[0]: (float(m[1]), float(m[2]))
             for m in re.findall(r"^(alpha|beta\[\d\])\s+(\S+)\s+(\S+)", out, re.MULTILINE)}
    assert len(found) == 6 and all(abs(found[k][0] - v) < 4 * found[k][1] for k, v in true.items()), out
