"""Cityscapes (real or synthetic) -> pix2pix A|B pairs, and finding ``--dataroot cityscapes``.

:func:`prepare_cityscapes` reads the official layout::

    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_color.png      (or _gtFine_labelIds.png)
    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png

and writes ``output_dir/{split}/{city}_{seq}_{frame}.png``: the photo (A, left) and the colour label (B, right)
side by side, each ``size x size`` (the 2:1 frames are squeezed to a square, as the original pix2pix did).
Labels->photo is therefore ``--direction BtoA``.

Differences from pix2pix's ``datasets/prepare_cityscapes_dataset.py``:

* The output keeps the frame name, so the FCN-score can find each synthesized photo's ground truth
  (``gtFine/val/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png``); the original numbered the files 1.jpg, 2.jpg.
* Labels are resized with nearest neighbour by default, so the B side holds only palette colours;
  ``label_resize="bicubic", image_format="jpg"`` (``--original``) reproduces the original's blended, JPEG-compressed
  labels (the setting of the published pix2pix/TR numbers).
* PNG output by default (lossless); every pair is checked first, and a missing or unmatched frame is an error
  listing the first few and the counts.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from pix2pix_tr.cityscapes_labels import ids_to_color
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.manifest import Part, check_complete, claim, command_line, mark_complete
from pix2pix_tr.io import atomic_save_image, read_image, read_label_ids
from pix2pix_tr.paths import PathError, check_no_overlap

_FRAME_RE = re.compile(r"^(?P<stem>[^/\\]+?_\d+_\d+)_(?P<kind>leftImg8bit|gtFine_color|gtFine_labelIds)\.png$")
LABEL_RESIZE = ("nearest", "bicubic")
IMAGE_FORMATS = ("png", "jpg")
_SHOW = 5  # how many offending names an error lists
PREPARE_TOOL = "prepare_cityscapes_dataset.py"
_PREPARE_FLAGS = {"gtFine_dir": "--gtFine_dir", "leftImg8bit_dir": "--leftImg8bit_dir", "size": "--size",
                  "label_resize": "--label_resize", "image_format": "--format", "limit": "--limit",
                  "jpeg_quality": "jpeg_quality"}


def _frames(folder: Path, kind: str) -> dict[str, Path]:
    """``{stem: path}`` of the ``*_{kind}.png`` files under ``folder/{city}/``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            m = _FRAME_RE.match(name)
            if m and m["kind"] == kind:
                out[m["stem"]] = Path(dirpath) / name
    return out


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more


def find_pairs(gtFine_dir, leftImg8bit_dir, split: str) -> list[tuple[str, Path, Path]]:
    """``[(stem, photo_path, label_path)]`` of one split, sorted by stem; raises on missing or unmatched frames.

    The label is ``*_gtFine_color.png`` when present, otherwise ``*_gtFine_labelIds.png`` (coloured with the
    official palette on the fly).
    """
    gt_split, photo_split = Path(gtFine_dir) / split, Path(leftImg8bit_dir) / split
    for flag, folder in (("--gtFine_dir", gt_split), ("--leftImg8bit_dir", photo_split)):
        if not folder.is_dir():
            raise DatasetError(f"{flag}: the folder {folder} does not exist; point {flag} at the unpacked "
                               f"Cityscapes folder that contains {split}/")
    photos = _frames(photo_split, "leftImg8bit")
    labels = _frames(gt_split, "gtFine_color")
    for stem, path in _frames(gt_split, "gtFine_labelIds").items():
        labels.setdefault(stem, path)
    if not photos:
        raise DatasetError(f"--leftImg8bit_dir: no *_leftImg8bit.png files under {photo_split}; point it at the "
                           "unpacked leftImg8bit folder (from leftImg8bit_trainvaltest.zip)")
    if not labels:
        raise DatasetError(f"--gtFine_dir: no *_gtFine_color.png or *_gtFine_labelIds.png files under {gt_split}; "
                           "point it at the unpacked gtFine folder (from gtFine_trainvaltest.zip)")
    no_label = set(photos) - set(labels)
    no_photo = set(labels) - set(photos)
    if no_label or no_photo:
        parts = []
        if no_label:
            parts.append(f"{len(no_label)} of {len(photos)} photos have no label ({_listing(no_label)})")
        if no_photo:
            parts.append(f"{len(no_photo)} of {len(labels)} labels have no photo ({_listing(no_photo)})")
        raise DatasetError(f"unmatched Cityscapes frames in {split}: {'; '.join(parts)}; check that --gtFine_dir "
                           "and --leftImg8bit_dir come from the same release and are completely unpacked")
    return [(stem, photos[stem], labels[stem]) for stem in sorted(photos)]


def make_pair(photo_path: Path, label_path: Path, size: int = 256, *, label_resize: str = "nearest") -> Image.Image:
    """One A|B image: photo (bicubic) left, colour label (``label_resize``) right, each ``size x size``.

    Images are read by :func:`pix2pix_tr.io.read_image` (EXIF orientation, 16-bit files scaled by one fixed
    rule); a ``*_labelIds.png`` by :func:`pix2pix_tr.io.read_label_ids` (ids are values: a 16-bit file is not
    scaled) and coloured with the official palette.
    """
    photo = read_image(photo_path, error=DatasetError).convert("RGB").resize((size, size), Image.BICUBIC)
    if label_path.name.endswith("_gtFine_labelIds.png"):
        ids = read_label_ids(label_path, error=DatasetError)
        if ids.size and (ids.min() < 0 or ids.max() > 255):
            raise DatasetError(f"{label_path} holds label ids outside 0..255 (up to {int(ids.max())}): a Cityscapes "
                               "*_gtFine_labelIds.png holds ids 0..33; pass the labelIds files, not instance ids")
        label = Image.fromarray(ids_to_color(ids.astype(np.uint8)))
    else:
        label = read_image(label_path, error=DatasetError)
    label = label.convert("RGB")  # the official *_color.png files are RGBA
    label = label.resize((size, size), Image.NEAREST if label_resize == "nearest" else Image.BICUBIC)
    pair = Image.new("RGB", (2 * size, size))
    pair.paste(photo, (0, 0))
    pair.paste(label, (size, 0))
    return pair


def prepare_cityscapes(gtFine_dir, leftImg8bit_dir, output_dir, size: int = 256, *,
                       splits: Iterable[str] = ("train", "val"), label_resize: str = "nearest",
                       image_format: str = "png", limit: int | None = None, jpeg_quality: int = 100,
                       workers: int = 1, progress: bool = False, overwrite: bool = False) -> dict[str, list[str]]:
    """Write pix2pix A|B pairs ``output_dir/{split}/{stem}.{image_format}`` from a Cityscapes-layout folder.

    Args:
        gtFine_dir: the ``gtFine`` folder (with ``train/``, ``val/`` inside).
        leftImg8bit_dir: the ``leftImg8bit`` folder.
        output_dir: destination; ``train/`` and ``val/`` are created. Its manifest
            (:mod:`pix2pix_tr.data.manifest`) records each split's settings and marks it complete only after its
            last file: a rerun with the same settings continues (pairs already written are kept, the rest are
            written), one with other settings, or into a split holding images no recorded run wrote, is refused
            unless ``overwrite`` (the split's old images are removed first).
        size: side of each square half (default 256, as in pix2pix).
        splits: which splits to convert (Cityscapes' ``test`` split has no public labels).
        label_resize: ``"nearest"`` (default: exact palette colours) or ``"bicubic"`` (the original behaviour).
        image_format: ``"png"`` (default) or ``"jpg"`` (the original behaviour: quality
            ``jpeg_quality``, default 100, without chroma subsampling).
        limit: convert only the first N frames (sorted by name) of each split, for quick runs.
        workers: processes converting frames in parallel (decoding 2048x1024 PNGs dominates; ~0.15 s CPU a frame).
        overwrite: replace splits made with other settings (``--overwrite``).

    All pairs of all splits are matched before anything is written; an input city whose manifest marks a split
    incomplete (an interrupted ``make_synthetic_cityscapes``) is refused. Returns ``{split: [stems]}``, the
    stems each split holds now.
    """
    size = int(size)
    if size < 8:
        raise DatasetError(f"--size must be at least 8 pixels, got {size}")
    if label_resize not in LABEL_RESIZE:
        raise DatasetError(f"--label_resize must be nearest or bicubic, got {label_resize!r}")
    if image_format not in IMAGE_FORMATS:
        raise DatasetError(f"--format must be png or jpg, got {image_format!r}")
    if limit is not None and int(limit) < 1:
        raise DatasetError(f"--limit must be >= 1, got {limit}")
    if int(workers) < 1:
        raise DatasetError(f"--workers must be >= 1, got {workers}")
    for flag, folder in (("--gtFine_dir", gtFine_dir), ("--leftImg8bit_dir", leftImg8bit_dir)):
        if not Path(folder).is_dir():
            raise DatasetError(f"{flag}: the folder {folder} does not exist; unpack the Cityscapes zip there or "
                               f"make a synthetic city with datasets/make_synthetic_cityscapes.py")
    try:
        check_no_overlap(output_dir, {"--gtFine_dir": gtFine_dir, "--leftImg8bit_dir": leftImg8bit_dir},
                         output_flag="--output_dir")
    except PathError as exc:
        raise DatasetError(str(exc)) from None
    splits = list(dict.fromkeys(splits))
    for split in splits:  # a synthetic city whose writer was interrupted
        for city in dict.fromkeys((Path(gtFine_dir).parent, Path(leftImg8bit_dir).parent)):
            check_complete(city, split, what="Cityscapes split")
    pairs = {split: find_pairs(gtFine_dir, leftImg8bit_dir, split) for split in splits}
    if limit is not None:
        pairs = {split: items[: int(limit)] for split, items in pairs.items()}
    out = Path(output_dir)
    settings = dict(gtFine_dir=str(Path(gtFine_dir).resolve()), leftImg8bit_dir=str(Path(leftImg8bit_dir).resolve()),
                    size=size, label_resize=label_resize, image_format=image_format, jpeg_quality=int(jpeg_quality),
                    limit=None if limit is None else int(limit))
    args = ["--gtFine_dir", gtFine_dir, "--leftImg8bit_dir", leftImg8bit_dir, "--output_dir", output_dir,
            "--size", size, "--splits", *splits, "--label_resize", label_resize, "--format", image_format]
    command = command_line("datasets/prepare_cityscapes_dataset.py", args + (["--limit", limit] if limit else []))
    claim(out, PREPARE_TOOL, [Part(split, settings, [f"{split}/{stem}.{image_format}" for stem, _, _ in items],
                                   [split], command, _PREPARE_FLAGS) for split, items in pairs.items()],
          overwrite=overwrite, flag="--output_dir")
    written: dict[str, list[str]] = {}
    save_kwargs = ({"quality": int(jpeg_quality), "subsampling": 0} if image_format == "jpg"
                   else {"compress_level": 1})
    pool = ProcessPoolExecutor(int(workers)) if int(workers) > 1 else None
    try:
        for split, items in pairs.items():
            # continuing: a pair already there was written, whole (atomic), with these settings
            jobs = [(photo_path, label_path, size, label_resize, out / split / f"{stem}.{image_format}", save_kwargs)
                    for stem, photo_path, label_path in items if not (out / split / f"{stem}.{image_format}").exists()]
            results = pool.map(_convert, jobs, chunksize=8) if pool else map(_convert, jobs)
            kept = len(items) - len(jobs)
            for k, _done in enumerate(results):
                if progress and ((k + 1) % 100 == 0 or k + 1 == len(jobs)):
                    print(f"  {split}: {kept + k + 1}/{len(items)}", flush=True)
            mark_complete(out, split)
            written[split] = [stem for stem, _, _ in items]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return written


def _convert(job) -> None:
    photo_path, label_path, size, label_resize, dest, save_kwargs = job
    atomic_save_image(make_pair(photo_path, label_path, size, label_resize=label_resize), dest, **save_kwargs)


def resolve_dataroot(dataroot) -> Path:
    """Find the folder behind ``--dataroot``.

    An existing folder is returned as is. The bare name ``cityscapes`` also finds ``./cityscapes`` or
    ``./datasets/cityscapes``. A folder in the raw Cityscapes layout (``gtFine/`` and ``leftImg8bit/`` but no
    ``train/``) is refused with the command that prepares it. Raises :class:`DatasetError` otherwise, saying how to
    prepare real Cityscapes and how to make the synthetic city.
    """
    if dataroot is None or str(dataroot).strip() == "":
        raise DatasetError("--dataroot is required: pass the folder that holds train/ and val/ A|B images")
    path = Path(os.path.expanduser(str(dataroot)))
    candidates = [path]
    if str(dataroot).rstrip("/\\") == "cityscapes":
        candidates = [Path("cityscapes"), Path("datasets") / "cityscapes"]
    for cand in candidates:
        if cand.is_dir():
            if (cand / "gtFine").is_dir() and (cand / "leftImg8bit").is_dir() and not (cand / "train").is_dir():
                raise DatasetError(
                    f"--dataroot {cand} is a raw Cityscapes folder (gtFine/, leftImg8bit/), not A|B pairs: run "
                    f"python datasets/prepare_cityscapes_dataset.py --gtFine_dir {cand / 'gtFine'} "
                    f"--leftImg8bit_dir {cand / 'leftImg8bit'} --output_dir {cand}_AB and pass --dataroot {cand}_AB")
            return cand
    if len(candidates) > 1:
        raise DatasetError(
            "--dataroot cityscapes: neither ./cityscapes nor ./datasets/cityscapes exists. For real Cityscapes, "
            "download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from cityscapes-dataset.com, unzip "
            "both into one folder (say ~/data/cityscapes_raw) and run python datasets/prepare_cityscapes_dataset.py "
            "--gtFine_dir ~/data/cityscapes_raw/gtFine --leftImg8bit_dir ~/data/cityscapes_raw/leftImg8bit "
            "--output_dir ./datasets/cityscapes; without Cityscapes, make the synthetic city with python "
            "datasets/make_synthetic_cityscapes.py --out ./datasets/synthetic_cityscapes --train 100 --val 20 and "
            "prepare it the same way (see docs/data.md)")
    raise DatasetError(f"--dataroot {dataroot} does not exist: pass a folder with train/ and val/ A|B images "
                       "(see docs/data.md)")
