"""The UCI benchmark's own pipeline on two yacht splits (skips without ../shared/data/uci).

Over the 20 splits the benchmark's test log-likelihood on yacht has a spread of about 0.2
nats per split around -0.3 (benchmarks/RESULTS.md); each split must clear the published
means of PBP (-1.63) and of the tuned MC dropout (-1.25), more than 4 such spreads lower.
A broken likelihood, standardisation or mixture lands far below them.
"""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


def _benchmark():
    return load_benchmark("uci", "uci_benchmark")


def test_yacht_splits_beat_the_published_baselines():
    uci = _benchmark()
    if not (uci.DATA / "yacht").is_dir():
        pytest.skip(f"UCI data not found at {uci.DATA} (../shared/data is absent)")
    result = uci.run("yacht", uci.DATA, n_splits=2, budget=uci.Budget(4000, 500), tune=False)
    pbp, _, tuned, *_ = (loglik for _, loglik in uci.PUBLISHED["yacht"])
    assert result.choices == [(uci.PRIOR_SCALE, uci.LIKELIHOOD)] * 2
    assert min(result.loglik) > max(pbp, tuned), result.loglik
    assert max(result.rmse) < 2.0  # PBP's mean RMSE is 1.02, the linear floor's 8.94
