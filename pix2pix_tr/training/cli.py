"""``python train.py ...`` (the installed ``pix2pix-tr-train``): parse, train, turn user errors into one line and
an exit status.

Exit status: 0 finished, or stopped cleanly by Ctrl-C / SIGTERM / ``--max_iters`` (state saved); 1 diverged (a
NaN/inf loss or weight; the last good checkpoint is kept); 2 bad options, data or run folder (one sentence);
3 no space left on the disk (the last complete checkpoint is kept); 130 aborted by a second Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..cli import run_cli
from ..options import check_train_options, train_parser
from .config import ConfigError, TrainConfig
from .errors import NoSpaceLeft, TrainingDiverged, TrainingError

EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_NO_SPACE, EXIT_ABORTED = 0, 1, 2, 3, 130


def parse(argv: Sequence[str] | None = None) -> TrainConfig:
    """train.py's arguments (``sys.argv[1:]`` when None) as a checked :class:`TrainConfig`. A bad flag, or a
    combination training cannot run with, exits 2 with argparse's usage line and one sentence naming the flag."""
    parser = train_parser()
    opt = check_train_options(parser.parse_args(argv), parser)
    try:
        return TrainConfig.from_options(opt)
    except ConfigError as exc:
        parser.error(str(exc))


def _train(argv: Sequence[str] | None) -> int:
    cfg = parse(argv)
    from .loop import train

    try:
        train(cfg)
    except NoSpaceLeft as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return EXIT_NO_SPACE
    except TrainingDiverged as exc:
        print(f"train.py: training diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of train.py: :func:`~pix2pix_tr.cli.run_cli` turns a TrainingError into exit status 2
    (``EXIT_BAD_INPUT``) and a second Ctrl-C into 130 (``EXIT_ABORTED``)."""
    return run_cli(_train, argv, user_errors=TrainingError, prog="train.py",
                   interrupted="aborted by a second Ctrl-C; the last saved state is kept")


if __name__ == "__main__":
    sys.exit(main())
