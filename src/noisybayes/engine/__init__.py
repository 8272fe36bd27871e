"""The one training engine: data sources, schedules and the loop, with a saved state."""

from noisybayes.engine.checkpoint import run_checkpointed
from noisybayes.engine.distributed import World
from noisybayes.engine.loop import (
    Objective,
    OptimizerFactory,
    RunResult,
    Trainer,
    WeightSampler,
    WindowReport,
    adam,
    load_state,
    save_state,
)
from noisybayes.engine.schedule import Decision, LinearDecay, Schedule, StallSchedule, Window
from noisybayes.engine.source import Batch, DataSource, TensorSource

__all__ = [
    "Batch",
    "DataSource",
    "Decision",
    "LinearDecay",
    "Objective",
    "OptimizerFactory",
    "RunResult",
    "Schedule",
    "StallSchedule",
    "TensorSource",
    "Trainer",
    "WeightSampler",
    "Window",
    "WindowReport",
    "World",
    "adam",
    "load_state",
    "run_checkpointed",
    "save_state",
]
