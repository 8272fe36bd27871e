"""``benchmarks/layer_noise.py``: its comparison rule, and one tiny run through ``main``
(skips without ../shared/data/uci)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from tests.benchmark_scripts import load_benchmark


def _benchmark():
    return load_benchmark("layer_noise", "layer_noise")


def test_compare_counts_only_differences_beyond_two_paired_standard_errors():
    bench = _benchmark()
    # paired differences (1, 1.1, 0.9): mean 1, se 0.1/sqrt(3) = 0.058
    assert bench.compare([2.0, 2.1, 1.9], [1.0, 1.0, 1.0]) == 1
    assert bench.compare([1.0, 1.0, 1.0], [2.0, 2.1, 1.9]) == -1
    # differences (0.1, -0.1, 0.05): mean 0.017, se 0.06
    assert bench.compare([1.1, 0.9, 1.05], [1.0, 1.0, 1.0]) == 0
    assert bench.compare([1.0], [0.0]) == 0  # one split: no standard error, no verdict


def test_one_tiny_run_prints_every_method():
    bench = _benchmark()
    if not (bench.uci.DATA / "yacht").is_dir():
        pytest.skip(f"UCI data not found at {bench.uci.DATA} (../shared/data is absent)")
    before = torch.get_num_threads()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = bench.main(["--splits", "2", "--steps", "5", "--epochs", "1", "yacht"])
    torch.set_num_threads(before)
    assert code == 0
    out = buffer.getvalue()
    for method in bench.METHODS:
        assert f"| yacht | {method} |" in out
    assert "- Gaussian dropout against dropout, of 1 data sets: test log-likelihood:" in out
