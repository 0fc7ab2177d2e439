"""Path rules every tool that writes files follows (docs/reliability.md).

* :func:`join_name`: ``--name`` is one plain folder name, so ``CHECKPOINTS_DIR/NAME`` and ``RESULTS_DIR/NAME``
  stay inside their folder (``--name ../../x`` or ``--name /etc`` is refused). A run folder that the user made
  a symbolic link (``checkpoints/city -> /bigdisk/city``) is the user's choice and is followed.
* :func:`check_no_overlap`: an output folder must not be, or be inside, an input folder (writing there would
  overwrite the inputs, or make the outputs the next run's inputs).
* :func:`ensure_writable_dir`: an output folder that is a file, read-only or not creatable is one sentence
  naming the flag, not a traceback.

Each raises :class:`PathError` (a ValueError) with one sentence; the tools turn it into exit status 2.
Paths are compared after resolving symbolic links and ``..``, so a link cannot sneak around a rule.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Mapping

__all__ = ["PathError", "check_plain_name", "join_name", "is_within", "check_no_overlap", "ensure_writable_dir"]


class PathError(ValueError):
    """A path given by the user breaks one of the rules above; the message names the flag and the fix."""


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def check_plain_name(name: str, *, flag: str = "--name") -> None:
    """``name`` must be a single folder name: not empty, not ``.``/``..``, no slash or backslash."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise PathError(f"{flag} {name!r} must be a plain folder name (no slashes, not '.' or '..'), because it "
                        f"is joined to an output folder; pass e.g. {flag} my_run")


def join_name(base: str | os.PathLike, name: str, *, flag: str = "--name") -> Path:
    """``base / name``, refusing a ``name`` that is not one plain folder name (so it cannot climb out of
    ``base``)."""
    check_plain_name(name, flag=flag)
    return Path(base) / name


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (symbolic links and ``..`` resolved)."""
    path, folder = _real(path), _real(folder)
    return path == folder or folder in path.parents


def check_no_overlap(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike], *,
                     output_flag: str) -> None:
    """Refuse an output folder that is one of the input folders or lies inside one.

    ``inputs`` maps a flag (or a description) to an input folder. An output folder that *contains* an input is
    allowed (pix2pix's own example writes ``--fold_AB data`` from ``data/A`` and ``data/B``)."""
    for flag, folder in inputs.items():
        if folder is None:
            continue
        if is_within(output, folder):
            where = "is" if _real(output) == _real(folder) else "is inside"
            raise PathError(f"{output_flag} {output} {where} {flag} {folder}: writing there would overwrite or mix "
                            f"with the input files; choose an {output_flag} outside {folder}")


def ensure_writable_dir(path: str | os.PathLike, *, flag: str) -> Path:
    """Create ``path`` (with parents) and check that a file can be written in it; PathError otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        raise PathError(f"{flag} {path} cannot be a folder because {blocker} is a file: pass a folder path, or "
                        f"move the file away") from None
    except OSError as exc:
        raise PathError(f"{flag} {path} cannot be created ({exc.strerror or exc}): pass a folder you can write "
                        f"to") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=path)
    except OSError as exc:
        raise PathError(f"{flag} {path} is not writable ({exc.strerror or exc}): pass a folder you can write "
                        f"to, or fix its permissions") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return path
