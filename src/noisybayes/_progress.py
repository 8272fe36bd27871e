"""Whether to show a progress bar: asked for, or by default only where a person watches."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["show_progress"]


def show_progress(progress: bool | None, stream: TextIO | None = None) -> bool:
    """``progress`` when given; for ``None``, whether ``stream`` (default ``sys.stderr``,
    where the bars go) is a terminal: on for a person at a shell, off in tests, pipes and
    logs."""
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        return progress
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
