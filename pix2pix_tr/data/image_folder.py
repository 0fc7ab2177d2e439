"""Listing the images of a folder (recursively, in a stable order)."""

from __future__ import annotations

import os
from pathlib import Path

from pix2pix_tr.data.errors import DatasetError

#: File extensions read as images (case-insensitive), as in the original pix2pix minus the rarely used ones.
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMG_EXTENSIONS)


def list_images(folder: str | os.PathLike, *, what: str = "image folder") -> list[Path]:
    """All image files under ``folder`` (recursively), sorted by their path relative to ``folder``.

    Hidden files and folders (names starting with ``.``, e.g. the temporary files of an interrupted atomic write)
    are skipped. Raises :class:`DatasetError` if the folder is missing or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"the {what} {root} does not exist or is not a folder: check the path")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and is_image_file(f))
    if not found:
        raise DatasetError(f"the {what} {root} contains no images ({', '.join(IMG_EXTENSIONS)}): "
                           "check the path or prepare the data first")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
