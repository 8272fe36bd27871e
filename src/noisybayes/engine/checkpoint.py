"""Checkpoints: a run restarted with the same arguments resumes from the last one and ends as
the uninterrupted run would.

Every ``every`` steps the trainer's whole state (:meth:`Trainer.state_dict`: parameters,
Adam's moments, the schedule, the generators, the position in the current pass, the trace)
is written to ``path`` through a temporary file renamed over it, so a run killed while
writing leaves the previous checkpoint whole. In a data-parallel run the processes' states
differ (each holds its own place in its own rows), so process 0 gathers them and writes one
file; on a restart process 0 reads it and sends each process its own entry, so the file
need only be where process 0 runs. One file can hold several runs of one
procedure under their keys (``nb.fit``'s first family and its full-rank refit).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.distributed as dist

from noisybayes.engine.distributed import World
from noisybayes.engine.loop import RunResult, Trainer, load_state, save_state

__all__ = ["run_checkpointed"]


def run_checkpointed(trainer: Trainer, path: str | Path, every: int,
                     world: World | None = None, key: str = "run") -> RunResult:
    """Run ``trainer`` to the end, resuming from the state saved under ``key`` in ``path`` if
    there is one and saving its state there every ``every`` steps (``world``: the processes
    of a data-parallel run)."""
    world = world or World()
    path = Path(path)
    runs: dict[str, list[dict]] = {}
    with world.together():  # an unreadable checkpoint or a missing folder stops every process
        if world.rank == 0 and not path.parent.is_dir():
            raise ValueError(f"checkpoint must name a file in an existing folder, got "
                             f"{str(path)!r} (no folder {str(path.parent)!r})")
        if world.rank == 0 and path.exists():
            runs = _read(path, world)
    state = _scattered(runs.get(key), world)
    if state is not None:
        trainer.load_state_dict(state)
    while True:
        result = trainer.run(until=trainer.step + every)
        if result is not None:
            return result
        runs[key] = _gathered(trainer.state_dict(), world)
        with world.together():  # a failed write stops every process, not only process 0
            if world.rank == 0:
                _write(path, {"world_size": world.size, "runs": runs})


def _write(path: Path, saved: dict) -> None:
    """``saved`` to ``path`` through a temporary file renamed over it (removed if the
    write fails, which is then a ``ValueError`` naming the file)."""
    partial = path.with_name(path.name + ".partial")
    try:
        save_state(saved, partial)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ValueError(f"checkpoint {str(path)!r} could not be written ({error})") from error


def _read(path: Path, world: World) -> dict[str, list[dict]]:
    """The runs saved in the checkpoint at ``path``: per key, every process's state."""
    try:
        saved = load_state(path)
        runs, size = dict(saved["runs"]), saved["world_size"]
    except Exception as error:
        raise ValueError(f"checkpoint must be a file written by a checkpointed run, got "
                         f"{str(path)!r}, which could not be read as one ({error})") from error
    if size != world.size:
        raise ValueError(f"checkpoint {str(path)!r} was written by a run of {size} process(es); "
                         f"this run has {world.size}: resume it with as many")
    return runs


def _scattered(states: list[dict] | None, world: World) -> dict | None:
    """This process's entry of ``states`` (every process's state, held by process 0), or
    ``None`` where process 0 has none."""
    if not world.parallel:
        return None if states is None else states[0]
    received: list[dict | None] = [None]
    sent: list[dict | None] | None = None
    if world.rank == 0:
        sent = list(states) if states is not None else [None] * world.size
    dist.scatter_object_list(received, sent, src=0)
    return received[0]


def _gathered(state: dict, world: World) -> list[dict]:
    """Every process's ``state``, in rank order, on process 0 (``[state]`` alone; on the
    other processes, their own only: they do not write)."""
    if not world.parallel:
        return [state]
    gathered: list[dict | None] = [None] * world.size
    dist.gather_object(state, gathered if world.rank == 0 else None, dst=0)
    return [s for s in gathered if s is not None] if world.rank == 0 else [state]
