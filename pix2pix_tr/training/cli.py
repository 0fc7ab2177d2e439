"""``python train.py ...`` (the installed ``pix2pix-tr-train``): parse, train, turn user errors into one line and
an exit status: 0 finished or stopped cleanly, 1 the losses diverged, 2 bad options or data, 130 a second Ctrl-C."""

from __future__ import annotations

import sys
from typing import Sequence

from ..cli import run_cli
from ..options import parse_train
from .errors import TrainingDiverged, TrainingError


def _train(argv: Sequence[str] | None) -> int:
    opt = parse_train(argv)  # argparse errors exit 2 with a usage line
    from .loop import train

    try:
        train(opt)
    except TrainingDiverged as exc:
        print(f"train.py: training diverged: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_train, argv, user_errors=TrainingError, prog="train.py",
                   interrupted="aborted by a second Ctrl-C; the last saved state is kept")


if __name__ == "__main__":
    sys.exit(main())
