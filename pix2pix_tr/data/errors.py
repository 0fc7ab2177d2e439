"""The one exception type of the data package.

Every problem with the user's files (a missing folder, an image of the wrong shape, a corrupt PNG, unmatched
Cityscapes pairs) raises :class:`DatasetError` with one sentence that names the file or flag and says what to
do. It subclasses :class:`ValueError`, so generic handlers still catch it; the command-line scripts print the
message without a traceback and exit with status 2.
"""


class DatasetError(ValueError):
    """Bad or missing input data; the message names the file or flag and what to do about it."""
