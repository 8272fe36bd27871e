"""Progress bars: asked for, or by default only on a terminal."""

from __future__ import annotations

import io

import pytest

from noisybayes._progress import show_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_by_default_a_bar_only_on_a_terminal():
    assert show_progress(None, Terminal()) is True
    assert show_progress(None, io.StringIO()) is False
    assert show_progress(False, Terminal()) is False
    assert show_progress(True, io.StringIO()) is True
    with pytest.raises(TypeError, match=r"^progress must be True, False or None, got 1$"):
        show_progress(1)  # type: ignore[arg-type]



def test_a_network_estimator_leaves_its_bar_to_the_terminal_test(monkeypatch):
    """``BNNRegressor()`` passes ``progress=None`` on to training, where the terminal test
    decides; an explicit value passes as it is."""
    import sys

    import numpy as np

    import noisybayes as nb

    train_module = sys.modules["noisybayes.nn.train"]
    asked: list[object] = []

    def recording(progress, stream=None):
        asked.append(progress)
        return show_progress(progress, stream)

    monkeypatch.setattr(train_module, "show_progress", recording)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 2)), rng.normal(size=64)
    nb.BNNRegressor(hidden=4, n_epochs=1, batch_size=32).fit(X, y)
    nb.BNNRegressor(hidden=4, n_epochs=1, batch_size=32, progress=False).fit(X, y)
    assert asked == [None, False]
