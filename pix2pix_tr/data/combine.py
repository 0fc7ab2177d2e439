"""Combine two folders of paired images (A/ and B/, same names) into pix2pix A|B images.

The counterpart of pix2pix's ``datasets/combine_A_and_B.py`` for users with their own data::

    fold_A/train/0001.jpg   fold_B/train/0001.png   ->   fold_AB/train/0001.png   (A left, B right)

Files are matched by their path relative to the folder *without the extension* (so ``train/0001.jpg`` pairs with
``train/0001.png``), subfolders (``train/``, ``val/``, ``test/``, or anything else) are kept, and every pair is
checked before anything is written. ``--fold_AB`` must not be (or lie inside) ``--fold_A`` or ``--fold_B``.
The images are written into a hidden staging folder inside ``fold_AB`` and moved into place only when all of
them succeeded, so a failure (a corrupt image, a full disk) leaves ``fold_AB`` as it was. A rerun into the same
``fold_AB`` with other settings is refused unless ``--overwrite`` (see :func:`combine_A_and_B`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pix2pix_tr.data.aligned import open_image
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.image_folder import list_images
from pix2pix_tr.data.manifest import Part, claim, command_line, mark_complete
from pix2pix_tr.io import atomic_save_image, read_label_ids
from pix2pix_tr.paths import PathError, check_no_overlap

_SHOW = 5
COMBINE_TOOL = "combine_A_and_B.py"
_COMBINE_FLAGS = {"fold_A": "--fold_A", "fold_B": "--fold_B", "size": "--size", "b_resize": "--b_resize",
                  "image_format": "--format", "limit": "--limit", "b_label_ids": "--b_label_ids"}


def _keyed(folder: Path, flag: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in list_images(folder, what=f"{flag} folder"):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in out:
            raise DatasetError(f"{flag}: both {out[key]} and {path} have the name {key}; keep one of them")
        out[key] = path
    return out


def _listing(names) -> str:
    names = sorted(names)
    return ", ".join(names[:_SHOW]) + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def combine_A_and_B(fold_A, fold_B, fold_AB, *, size: int | None = None, b_resize: str = "bicubic",
                    image_format: str = "png", limit: int | None = None, b_label_ids: bool = False,
                    overwrite: bool = False) -> list[str]:
    """Write ``fold_AB/{name}.{image_format}`` = A | B for every name present in both folders.

    Args:
        fold_A, fold_B: folders with the same relative names (extensions may differ).
        fold_AB: destination (created).
        size: resize both halves to ``size x size`` (A bicubic, B with ``b_resize``); without it A and B must
            already have the same size.
        b_resize: ``"bicubic"`` or ``"nearest"`` (use nearest when B holds label maps, so no colours are blended).
        image_format: ``"png"`` (default) or ``"jpg"``.
        limit: combine only the first N names (sorted).
        b_label_ids: B holds one-channel label-id maps: their values are copied as they are (8- or 16-bit, never
            scaled; ids above 255 are refused) and resized nearest-neighbour.
        overwrite: replace what an earlier run with other settings wrote (``--overwrite``).

    ``fold_AB``'s manifest (:mod:`pix2pix_tr.data.manifest`; one part per top-level subfolder, ``.`` for files
    at the top) records the settings: a rerun with the same settings writes the pairs again, one with other
    settings, or into a folder holding images no recorded run wrote, is refused unless ``overwrite`` (the old
    images of the parts written are removed first, so no stale pair stays beside the new ones).

    Images are read as displayed (EXIF orientation applied) and 16-bit files are scaled by one fixed rule
    (:func:`pix2pix_tr.io.read_image`). A 16-bit grey file whose values all lie in 1..255 would come out nearly
    black that way; it is almost certainly a label-id map, so it is refused unless ``b_label_ids`` says so.

    Returns the relative names written. Raises :class:`DatasetError` for missing folders, names present on one
    side only (the first few and the counts), and pairs of different sizes when ``size`` is not given.
    """
    if b_resize not in ("bicubic", "nearest"):
        raise DatasetError(f"--b_resize must be bicubic or nearest, got {b_resize!r}")
    if image_format not in ("png", "jpg"):
        raise DatasetError(f"--format must be png or jpg, got {image_format!r}")
    if size is not None and int(size) < 1:
        raise DatasetError(f"--size must be >= 1, got {size}")
    if limit is not None and int(limit) < 1:
        raise DatasetError(f"--limit must be >= 1, got {limit}")
    fold_A, fold_B, fold_AB = Path(fold_A), Path(fold_B), Path(fold_AB)
    try:
        check_no_overlap(fold_AB, {"--fold_A": fold_A, "--fold_B": fold_B}, output_flag="--fold_AB")
    except PathError as exc:
        raise DatasetError(str(exc)) from None
    a, b = _keyed(fold_A, "--fold_A"), _keyed(fold_B, "--fold_B")
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} of {len(a)} images in --fold_A have no partner in --fold_B ({_listing(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} of {len(b)} images in --fold_B have no partner in --fold_A ({_listing(only_b)})")
        raise DatasetError("; ".join(parts) + ": give both folders the same file names")
    names = sorted(a)
    if limit is not None:
        names = names[: int(limit)]
    settings = dict(fold_A=str(fold_A.resolve()), fold_B=str(fold_B.resolve()), size=None if size is None else int(size),
                    b_resize=b_resize, image_format=image_format, limit=None if limit is None else int(limit),
                    b_label_ids=bool(b_label_ids))
    args = ["--fold_A", fold_A, "--fold_B", fold_B, "--fold_AB", fold_AB, "--b_resize", b_resize,
            "--format", image_format] + (["--size", size] if size else []) + (["--limit", limit] if limit else []) \
        + (["--b_label_ids"] if b_label_ids else [])
    command = command_line("datasets/combine_A_and_B.py", args)
    by_part: dict[str, list[str]] = {}
    for name in names:
        top = name.split("/")[0] if "/" in name else "."
        by_part.setdefault(top, []).append(f"{name}.{image_format}")
    parts = [Part(top, settings, files, [top], command, _COMBINE_FLAGS) for top, files in by_part.items()]
    claim(fold_AB, COMBINE_TOOL, parts, overwrite=overwrite, flag="--fold_AB", check_only=True)  # before the work
    fold_AB.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".combine-", dir=fold_AB))
    try:
        written = _write_pairs(a, b, names, staging, size=size, b_resize=b_resize, image_format=image_format,
                               b_label_ids=b_label_ids)
        claim(fold_AB, COMBINE_TOOL, parts, overwrite=overwrite, flag="--fold_AB")
        for name in written:  # all pairs are good: move them into place (same filesystem: renames)
            dest = fold_AB / f"{name}.{image_format}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f"{name}.{image_format}", dest)
        for part in parts:
            mark_complete(fold_AB, part.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return written


def _read_side(path: Path, flag: str, *, label_ids: bool) -> Image.Image:
    """One image of a pair: an intensity image (:func:`open_image`), or with ``label_ids`` the stored ids as an
    8-bit grey image. A 16-bit grey image holding only small values is refused as ambiguous (see above)."""
    if label_ids:
        ids = read_label_ids(path, error=DatasetError)
        if ids.size and (ids.min() < 0 or ids.max() > 255):
            raise DatasetError(f"{path} holds label ids up to {int(ids.max())}; an A|B image stores ids 0..255: "
                               "renumber the ids, or drop --b_label_ids if the file holds intensities")
        return Image.fromarray(ids.astype(np.uint8), "L")
    if _sixteen_bit_grey(path):
        values = read_label_ids(path, error=DatasetError)
        if values.size and 0 < int(values.max()) <= 255:
            advice = ("pass --b_label_ids if --fold_B holds label-id maps" if flag == "--fold_B" else
                      "put label-id maps in --fold_B and pass --b_label_ids (then train with --direction BtoA)")
            raise DatasetError(f"{path} is a 16-bit grey image whose values all lie in 0..{int(values.max())}: read "
                               f"as intensities (value / 257) it would be black, so it is probably a label-id map: "
                               f"{advice}, or save it as an 8-bit image")
    return open_image(path)


def _sixteen_bit_grey(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.mode.startswith("I;16") or img.mode == "I"
    except Exception:  # noqa: BLE001 - open_image names an unreadable file
        return False


def _write_pairs(a: dict[str, Path], b: dict[str, Path], names: list[str], out: Path, *, size: int | None,
                 b_resize: str, image_format: str, b_label_ids: bool = False) -> list[str]:
    written = []
    for name in names:
        img_a = _read_side(a[name], "--fold_A", label_ids=False).convert("RGB")
        img_b = _read_side(b[name], "--fold_B", label_ids=b_label_ids).convert("RGB")
        if size is not None:
            img_a = img_a.resize((int(size), int(size)), Image.BICUBIC)
            nearest = b_resize == "nearest" or b_label_ids
            img_b = img_b.resize((int(size), int(size)), Image.NEAREST if nearest else Image.BICUBIC)
        elif img_a.size != img_b.size:
            raise DatasetError(f"{a[name]} is {img_a.size[0]}x{img_a.size[1]} but {b[name]} is "
                               f"{img_b.size[0]}x{img_b.size[1]}: pass --size N to resize both halves to NxN")
        w, h = img_a.size
        pair = Image.new("RGB", (2 * w, h))
        pair.paste(img_a, (0, 0))
        pair.paste(img_b, (w, 0))
        kwargs = {"quality": 95} if image_format == "jpg" else {"compress_level": 1}
        atomic_save_image(pair, out / f"{name}.{image_format}", **kwargs)
        written.append(name)
    return written
