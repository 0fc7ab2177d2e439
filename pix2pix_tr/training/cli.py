"""``python train.py ...``: parse, train, turn user errors into one line and an exit status."""

from __future__ import annotations

import sys
from typing import Sequence

from ..options import parse_train
from .errors import TrainingDiverged, TrainingError


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse_train(argv)  # argparse errors exit 2 with a usage line
    from .loop import train

    try:
        train(opt)
    except TrainingError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"train.py: training diverged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train.py: aborted by a second Ctrl-C; the last saved state is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
