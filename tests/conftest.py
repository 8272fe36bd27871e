"""Test-wide settings."""

from __future__ import annotations

import torch

# The suite's models are small: one thread avoids OpenMP spin-waits that make tiny matrix
# products orders of magnitude slower when another process shares the cores.
torch.set_num_threads(1)
