"""Randomness as an argument: run library code that draws from torch's global generator
(``Distribution.sample``) reproducibly from a user's ``torch.Generator``, leaving the
global generator untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from noisybayes._checks import check_seed

__all__ = ["make_generator", "seeded_from"]


def make_generator(seed: int | None = None, generator: torch.Generator | None = None):
    """The generator to use: ``generator`` if given, else a new one seeded with ``seed``."""
    seed = check_seed(seed)
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
        if seed is not None:
            raise ValueError(f"seed must be None when a generator is given, got {seed!r}")
        return generator
    new = torch.Generator()
    if seed is None:
        new.seed()
    else:
        new.manual_seed(seed)
    return new


@contextmanager
def seeded_from(generator: torch.Generator) -> Iterator[None]:
    """Within the block the global generator is seeded from ``generator``; restored after."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
