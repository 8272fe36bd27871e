"""The one training engine: data sources, schedules and the loop, with a saved state."""

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
    "adam",
    "load_state",
    "save_state",
]
