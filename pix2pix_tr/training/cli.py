"""``python train.py ...``: parse, train, turn user errors into one line and an exit status.

Exit status: 0 finished, or stopped cleanly by Ctrl-C / SIGTERM / ``--max_iters`` (state saved); 1 diverged (a
NaN/inf loss or weight; the last good checkpoint is kept); 2 bad options, data or run folder (one sentence);
3 no space left on the disk (the last complete checkpoint is kept); 130 aborted by a second Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..options import parse_train
from .errors import NoSpaceLeft, TrainingDiverged, TrainingError

EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_NO_SPACE, EXIT_ABORTED = 0, 1, 2, 3, 130


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse_train(argv)  # argparse errors exit 2 with a usage line
    from .loop import train

    try:
        train(opt)
    except NoSpaceLeft as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return EXIT_NO_SPACE
    except TrainingError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as exc:
        print(f"train.py: training diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("train.py: aborted by a second Ctrl-C; the last saved state is kept", file=sys.stderr)
        return EXIT_ABORTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
