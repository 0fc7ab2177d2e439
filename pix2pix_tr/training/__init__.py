"""The training application: the loop (:func:`train`) over a :class:`TrainConfig` (what the run is), a
:class:`TrainState` (where it stands: everything a resume needs) and a :class:`Checkpointer` (what is written
when, and in which order); checkpoints, optimisers and schedules, DDP plumbing."""

from .checkpoint import Checkpointer
from .config import TrainConfig
from .errors import TrainingDiverged, TrainingError
from .loop import TrainResult, train
from .state import TrainState

__all__ = ["train", "TrainResult", "TrainConfig", "TrainState", "Checkpointer", "TrainingError",
           "TrainingDiverged"]
