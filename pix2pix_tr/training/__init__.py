"""The training application: the loop (:func:`train`), checkpoints, optimisers and schedules, DDP plumbing."""

from .errors import TrainingDiverged, TrainingError
from .loop import TrainResult, train

__all__ = ["train", "TrainResult", "TrainingError", "TrainingDiverged"]
