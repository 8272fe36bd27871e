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

