"""Checkpoints: a run restarted with the same arguments resumes from the last one and ends as
the uninterrupted run would.

Every ``every`` steps the trainer's whole state (:meth:`Trainer.state_dict`: parameters,
Adam's moments, the schedule, the generators, the position in the current pass, the trace)
is written to ``path`` through a temporary file renamed over it, so a run killed while
writing leaves the previous checkpoint whole. In a data-parallel run the processes' states
differ (each holds its own place in its own rows), so process 0 gathers them and writes one
file, and each process resumes from its own entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from noisybayes.engine.distributed import World
from noisybayes.engine.loop import RunResult, Trainer, load_state

__all__ = ["run_checkpointed"]


def run_checkpointed(trainer: Trainer, path: str | Path, every: int,
                     world: World | None = None) -> RunResult:
    """Run ``trainer`` to the end, resuming from ``path`` if it exists and writing its state
    there every ``every`` steps (``world``: the processes of a data-parallel run)."""
    world = world or World()
    path = Path(path)
    if path.exists():
        trainer.load_state_dict(_own_state(path, world))
    while True:
        result = trainer.run(until=trainer.step + every)
        if result is not None:
            return result
        _save(trainer, path, world)


def _own_state(path: Path, world: World) -> dict:
    """This process's entry of the checkpoint at ``path``."""
    try:
        saved = load_state(path)
        states, size = saved["states"], saved["world_size"]
    except Exception as error:
        raise ValueError(f"checkpoint must be a file written by a checkpointed run, got "
                         f"{str(path)!r}, which could not be read as one ({error})") from error
    if size != world.size:
        raise ValueError(f"checkpoint {str(path)!r} was written by a run of {size} process(es); "
                         f"this run has {world.size}: resume it with as many")
    return states[world.rank]


def _save(trainer: Trainer, path: Path, world: World) -> None:
    state = trainer.state_dict()
    states = [state]
    if world.parallel:
        gathered: list[dict | None] = [None] * world.size
        dist.gather_object(state, gathered if world.rank == 0 else None, dst=0)
        states = [s for s in gathered if s is not None]
    if world.rank == 0:
        partial = path.with_name(path.name + ".partial")
        torch.save({"world_size": world.size, "states": states}, partial)
        os.replace(partial, path)
