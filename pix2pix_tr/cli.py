"""The one way our command-line tools end: a user error is one sentence on stderr and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable, Sequence


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *,
            user_errors: type[BaseException] | tuple[type[BaseException], ...]) -> int:
    """Call ``main(argv)``. An exception of ``user_errors`` prints ``error: <message>`` (no traceback) and returns 2;
    Ctrl-C prints ``interrupted`` and returns 130; anything else is a bug and keeps its traceback."""
    try:
        return int(main(argv) or 0)
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
