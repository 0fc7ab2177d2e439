"""Atomic file output: nothing the user had is lost if a write is interrupted.

Every checkpoint, image, log snapshot and HTML page goes through these helpers: the data is written to a
temporary file in the destination folder, flushed, and renamed over the destination (``os.replace`` is atomic
on POSIX and Windows when both paths are on the same filesystem). A full disk (ENOSPC/EDQUOT, also when
``torch.save`` wraps it in a RuntimeError) becomes :class:`NoSpaceError`, after the partial file is removed.
Temporary files are named ``.{name}.XXXXXXXX.tmp`` (:data:`TMP_GLOB`) so that a tool owning a folder can
remove the ones a killed process left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

# mkstemp creates files readable by their owner only; the renamed file should get the usual permissions.
# The umask is read once, at import (reading it means setting it, which is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: glob pattern of the temporary files of :func:`atomic_open`
TMP_GLOB = ".*.tmp"

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class NoSpaceError(OSError):
    """A write failed because the disk (or quota) is full. ``folder`` is where it was writing, ``free_bytes``
    what was free there after the partial file was removed. The destination file is untouched."""

    def __init__(self, path: Path, free_bytes: int | None) -> None:
        self.path = Path(path)
        self.folder = self.path.parent
        self.free_bytes = free_bytes
        free = "" if free_bytes is None else f" ({free_bytes / 2**20:.1f} MB free)"
        super().__init__(errno.ENOSPC, f"no space left on {self.folder}{free} while writing {self.path.name}")

    def __str__(self) -> str:
        return self.strerror


def is_no_space(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is a full disk. ``torch.save`` reports a full disk
    as a RuntimeError ("enforce fail at inline_container.cc") whose context is the OSError(ENOSPC)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NoSpaceError) or (isinstance(exc, OSError) and exc.errno in _NO_SPACE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes free for us under ``folder`` (None when it cannot be measured)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success, delete it on error."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open writes files; mode must contain 'w' or 'x', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, mode.replace("x", "w"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_no_space(exc) and not isinstance(exc, NoSpaceError):
            raise NoSpaceError(path, free_bytes(path.parent)) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename: a crash mid-write leaves the old checkpoint intact."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_save_image(image: Any, path: str | os.PathLike, **save_kwargs: Any) -> None:
    """Save a PIL image or an (H, W[, C]) uint8 array; the format follows the destination's extension."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.ascontiguousarray(image))
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {path}: use a .png or .jpg file name")
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=fmt, **save_kwargs)
