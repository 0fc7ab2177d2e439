"""Atomic file output: nothing the user had is lost if a write is interrupted.

Every checkpoint, image, log snapshot and HTML page goes through these helpers: the data is written to a
temporary file in the destination folder, flushed, and renamed over the destination (``os.replace`` is atomic
on POSIX and Windows when both paths are on the same filesystem).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

# mkstemp creates files readable by their owner only; the renamed file should get the usual permissions.
# The umask is read once, at import (reading it means setting it, which is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


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
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
