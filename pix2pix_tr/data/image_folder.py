"""Listing the images of a folder (recursively, in a stable order)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pix2pix_tr.data.errors import DatasetError

#: File extensions read as images (case-insensitive), as in the original pix2pix minus the rarely used ones.
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMG_EXTENSIONS)


def list_images(folder: str | os.PathLike, *, what: str = "image folder") -> list[Path]:
    """All image files under ``folder`` (recursively), sorted by their path relative to ``folder``.

    Hidden files and folders (names starting with ``.``, e.g. the temporary files of an interrupted atomic write)
    are skipped. Symbolic links are followed, but a folder reached twice (a link loop, or two links to one
    folder) is listed once; files that are the same file by resolved path (file links) are kept and named in a
    warning on stderr, since they will be sampled more than once. Raises :class:`DatasetError` if the folder is
    missing or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"the {what} {root} does not exist or is not a folder: check the path")
    found = []
    seen_dirs = {_identity(root)}
    skipped_links = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            key = _identity(Path(dirpath) / d)
            if key is None or key in seen_dirs:  # a loop back to a folder already walked, or a dangling link
                skipped_links.append(Path(dirpath) / d)
                continue
            seen_dirs.add(key)
            keep.append(d)
        dirnames[:] = keep
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and is_image_file(f))
    if not found:
        raise DatasetError(f"the {what} {root} contains no images ({', '.join(IMG_EXTENSIONS)}): "
                           "check the path or prepare the data first")
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    _warn_duplicates(root, found, skipped_links, what)
    return found


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows links
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _warn_duplicates(root: Path, found: list[Path], skipped_links: list[Path], what: str) -> None:
    by_file: dict[tuple[int, int] | None, list[Path]] = {}
    for path in found:
        key = _identity(path)
        by_file.setdefault(key if key is not None else (0, id(path)), []).append(path)
    twins = [paths for paths in by_file.values() if len(paths) > 1]
    if twins:
        shown = "; ".join(" = ".join(p.relative_to(root).as_posix() for p in paths) for paths in twins[:3])
        more = f" and {len(twins) - 3} more" if len(twins) > 3 else ""
        print(f"warning: the {what} {root} reaches {len(twins)} file(s) under more than one name through links "
              f"({shown}{more}); each name is a separate sample", file=sys.stderr)
    if skipped_links:
        shown = ", ".join(p.relative_to(root).as_posix() for p in skipped_links[:3])
        more = f" and {len(skipped_links) - 3} more" if len(skipped_links) > 3 else ""
        print(f"warning: the {what} {root}: skipped {len(skipped_links)} folder(s) reached a second time through "
              f"links (a link loop, or two ways to one folder) or through a dangling link ({shown}{more})", file=sys.stderr)
