"""Exceptions the training application raises for the user (train.py prints them without a traceback)."""


class TrainingError(RuntimeError):
    """Bad options, data or checkpoint: the message names the flag or file and what to do. train.py exits 2."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the message says where and which checkpoint was kept. train.py exits 1."""


class NoSpaceLeft(TrainingError):
    """The disk filled up while saving; the message names the folder and the space to free. train.py exits 3."""
