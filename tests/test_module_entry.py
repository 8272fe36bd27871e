"""``python -m noisybayes`` is the ``noisybayes`` command."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_noisybayes_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "noisybayes", "--help"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0
    assert "demo" in done.stdout and "fit" in done.stdout
