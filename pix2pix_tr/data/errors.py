"""The one exception type of the data package.

Every problem with the user's files (a missing folder, an image of the wrong shape, a corrupt PNG, unmatched
Cityscapes pairs) raises :class:`DatasetError` with one sentence that names the file or flag and says what to
do. It subclasses :class:`ValueError`, so generic handlers still catch it; the command-line scripts print the
message without a traceback and exit with status 2.
"""

import re


class DatasetError(ValueError):
    """Bad or missing input data; the message names the file or flag and what to do about it.

    Raised in a DataLoader worker, it reaches the main process re-created by torch around the worker's whole
    traceback ("Caught DatasetError in DataLoader worker process 0. Original Traceback ..."): the constructor
    keeps only the original sentence, so every catcher (train.py, test.py) prints the one sentence."""

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str) and message.startswith(f"Caught {type(self).__name__} in DataLoader worker"):
            message = _worker_message(message, type(self).__name__)
        super().__init__(message, *args)


def _worker_message(wrapped: str, name: str) -> str:
    """The original message inside torch's worker wrapper: what follows the last ``...DatasetError: `` line."""
    starts = [m.end() for m in re.finditer(rf"^(?:[\w.]+\.)?{re.escape(name)}: ", wrapped, re.M)]
    return wrapped[starts[-1]:].strip() if starts else wrapped
