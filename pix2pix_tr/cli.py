"""What every command-line tool of the project shares.

* :func:`run_cli`: the one way a tool ends: a user error is one sentence on stderr and exit status 2;
* :func:`resolve_device` / :func:`device_problem`: ``--device auto|cpu|cuda|cuda:N`` checked the same everywhere;
* argparse validators (:func:`positive_int`, :func:`non_negative_int`, :func:`positive_float`,
  :func:`non_negative_float`, :func:`int_or_inf`): a bad value names the flag and what is expected;
* :func:`json_clean`: any result (numpy/torch scalars and arrays, NaN, inf, paths) as strict JSON values, by one
  rule: NaN -> null, +-inf -> "inf" / "-inf".

This module imports neither torch nor numpy at import time, so numpy-only modules (the metrics) may use it.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, Sequence


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *,
            user_errors: type[BaseException] | tuple[type[BaseException], ...], prog: str | None = None,
            interrupted: str = "interrupted") -> int:
    """Call ``main(argv)``. An exception of ``user_errors`` prints ``[prog: ]error: <message>`` (no traceback) and
    returns 2; a full disk (:class:`pix2pix_tr.io.NoSpaceError`) says where and returns 3 (every file written before
    is complete: all writes are atomic); Ctrl-C prints ``[prog: ]<interrupted>`` and returns 130; anything else is a
    bug and keeps its traceback. ``main``'s own return value is the exit status otherwise (None = 0)."""
    from .io import NoSpaceError

    prefix = f"{prog}: " if prog else ""
    try:
        return int(main(argv) or 0)
    except NoSpaceError as exc:
        print(f"{prefix}error: {exc}: free space there and run {prog or 'the command'} again", file=sys.stderr)
        return 3
    except user_errors as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}{interrupted}", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------------------------ devices
def device_problem(name: str | None, *, check_available: bool = True) -> str | None:
    """Why ``--device NAME`` cannot be used here (one sentence), or None when it can (``auto`` always can).
    ``check_available=False`` checks only that NAME is a device name (the machine may differ at run time)."""
    import torch

    if name in (None, "", "auto"):
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N"
    if device.type not in ("cpu", "cuda", "mps"):
        return f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N"
    if not check_available:
        return None
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"--device {name}: no CUDA device is visible; use --device cpu (or auto)"
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        return f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible; use cuda:0 or auto"
    return None


def resolve_device(name: str | None, error: type[Exception] = ValueError):
    """``auto`` (or None): CUDA when present, else CPU; otherwise the named device. A device that cannot be used
    raises ``error`` with the sentence of :func:`device_problem`."""
    import torch

    problem = device_problem(name)
    if problem is not None:
        raise error(problem)
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ------------------------------------------------------------------------------------------------ argparse types
def _parse(kind: type, text: str, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    return value


def positive_int(text: str) -> int:
    value = _parse(int, text, "a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse(int, text, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def int_or_inf(text: str) -> float | int:
    """A positive whole number, or ``inf`` (no limit)."""
    value = _parse(float, text, "a whole number or inf")
    if value == math.inf:
        return math.inf
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"must be a positive integer or inf, got {text}")
    return int(value)


# ------------------------------------------------------------------------------------------------ JSON
def json_clean(value: Any, *, significant: int | None = None) -> Any:
    """A copy of ``value`` that ``json.dumps`` writes as strict JSON; the one cleaner of every JSON file the
    project writes (results, options, reports, the experiments' records).

    The rule for numbers that JSON cannot hold: **NaN becomes ``null``; +inf and -inf become the strings
    ``"inf"`` and ``"-inf"``** (an infinite option such as ``--max_dataset_size inf`` reads back as what it was;
    a missing value and an infinite one stay distinguishable). Dicts (keys as strings), lists and tuples are
    cleaned recursively; numpy/torch scalars and arrays become Python numbers and lists; anything else (paths,
    devices, ...) its ``str``. ``significant=N`` rounds every finite float to N significant digits (a smaller
    file; ``experiments/ablation.py`` writes 6)."""
    if isinstance(value, dict):
        return {str(k): json_clean(v, significant=significant) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v, significant=significant) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not math.isfinite(value):
            return "inf" if value > 0 else "-inf"
        return value if significant is None else float(f"{value:.{significant}g}")
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars, torch tensors
        try:
            return json_clean(value.tolist(), significant=significant)
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)
