"""Shared plumbing of the evaluator: errors, Cityscapes file discovery, image loading, devices and CLI exits.

It imports no other evaluation module but :mod:`evaluation.labels`; each command's entry point lives in its own
module (``evaluation.fcn_score:command``, ``evaluation.train_scorer:command``, ...)."""

from __future__ import annotations

import hashlib
import math
import os
import sys
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from evaluation.labels import ids_to_train_ids
from pix2pix_tr.cli import resolve_device as _resolve_device
from pix2pix_tr.cli import run_cli as _run_cli
from pix2pix_tr.paths import PathError, check_no_overlap, ensure_writable_dir, is_within
from pix2pix_tr.results_folder import foreign_outputs


class EvaluationError(ValueError):
    """Bad input to the evaluator (a path, a flag, a checkpoint). The CLIs print it as one line and exit 2."""


class ScorerCheckpointError(EvaluationError):
    """A scorer checkpoint that is missing, unreadable, or does not match what it is used for."""


class DivergedError(RuntimeError):
    """A training that went non-finite (train_scorer). The CLIs print it as one line and exit 1, the project's code for
    divergence; nothing non-finite was saved."""


class MissingFramesError(EvaluationError):
    """Synthesized frames and ground-truth frames do not match one to one."""

    def __init__(self, message: str, missing_fake: Sequence[str] = (), missing_gt: Sequence[str] = ()):
        super().__init__(message)
        self.missing_fake = list(missing_fake)
        self.missing_gt = list(missing_gt)


#: ``{city}_{seq:06d}_{frame:06d}``: the Cityscapes frame id every file name starts with.
FRAME_RE = re.compile(r"^(?P<city>.+?)_(?P<seq>\d{6})_(?P<frame>\d{6})")


def frame_city(frame_id: str) -> str:
    match = FRAME_RE.match(frame_id)
    if match is None:
        raise EvaluationError(f"{frame_id!r} is not a Cityscapes frame id of the form city_000000_000000")
    return match.group("city")


def require_cityscapes_split(cityscapes_dir: str | Path, split: str, *, need_photos: bool = True,
                             need_labels: bool = True) -> Path:
    root = Path(cityscapes_dir)
    if not root.is_dir():
        raise EvaluationError(f"--cityscapes_dir {root} does not exist; point it at the folder holding gtFine/ and "
                              f"leftImg8bit/ (real Cityscapes, or make one with python "
                              f"datasets/make_synthetic_cityscapes.py --out DIR)")
    wanted = ([f"gtFine/{split}"] if need_labels else []) + ([f"leftImg8bit/{split}"] if need_photos else [])
    for sub in wanted:
        if not (root / sub).is_dir():
            raise EvaluationError(f"--cityscapes_dir {root} has no {sub}/ folder; it must hold the Cityscapes layout "
                                  f"gtFine/{{train,val}}/CITY/ and leftImg8bit/{{train,val}}/CITY/")
    return root


def list_label_frames(cityscapes_dir: str | Path, split: str) -> dict[str, Path]:
    """``{frame_id: .../gtFine/{split}/{city}/{frame_id}_gtFine_labelIds.png}``, sorted by frame id."""
    root = Path(cityscapes_dir) / "gtFine" / split
    frames = {}
    for path in sorted(root.glob("*/*_gtFine_labelIds.png")):
        frames[path.name[: -len("_gtFine_labelIds.png")]] = path
    return frames


def photo_path(cityscapes_dir: str | Path, split: str, frame_id: str) -> Path:
    return Path(cityscapes_dir) / "leftImg8bit" / split / frame_city(frame_id) / f"{frame_id}_leftImg8bit.png"


def label_path(cityscapes_dir: str | Path, split: str, frame_id: str) -> Path:
    return Path(cityscapes_dir) / "gtFine" / split / frame_city(frame_id) / f"{frame_id}_gtFine_labelIds.png"


def load_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read image {path}: {exc}") from None


def load_train_ids(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ``*_gtFine_labelIds.png`` as (H, W) uint8 train ids; ``size=(W, H)`` resizes nearest-neighbour."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise EvaluationError(f"{path} is not a label-id image (mode {img.mode}); FCN-score reads "
                                      f"*_gtFine_labelIds.png, not the *_color.png files")
            if size is not None and img.size != tuple(size):
                img = img.resize(tuple(size), Image.NEAREST)
            ids = np.asarray(img)
    except OSError as exc:
        raise EvaluationError(f"cannot read label image {path}: {exc}") from None
    if ids.max(initial=0) > 255:
        raise EvaluationError(f"{path} holds label ids above 255; expected Cityscapes ids 0..33")
    return ids_to_train_ids(ids.astype(np.uint8))


def normalize_photo(photo: Image.Image | np.ndarray, mean: Sequence[float], std: Sequence[float]):
    """uint8 RGB (H, W, 3) -> float tensor (3, H, W): ``(x / 255 - mean) / std``."""
    import torch

    arr = np.asarray(photo, dtype=np.float32) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (t - m) / s


def resolve_device(device: str | None):
    """``--device`` as a torch device (``auto``: CUDA when present); an unusable one is an :class:`EvaluationError`."""
    return _resolve_device(device, EvaluationError)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_image_size(text: str | int) -> int:
    try:
        size = int(text)
    except (TypeError, ValueError):
        raise EvaluationError(f"--image_size {text!r} must be a positive integer (square images, e.g. 256)") from None
    if size < 16:
        raise EvaluationError(f"--image_size {size} is too small; use 16 or more (256 is the paper's)")
    return size


def check_int(value, flag: str, minimum: int, what: str) -> int:
    """``value`` as an int of at least ``minimum``; anything else is one sentence naming ``flag`` (``what``: the
    rule in words, e.g. "at least 1")."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise EvaluationError(f"{flag} {value!r} must be {what}")
    return int(value)


def check_float(value, flag: str, *, positive: bool) -> float:
    """``value`` as a finite float, positive (``positive``) or at least 0; one sentence naming ``flag`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise EvaluationError(f"{flag} {value!r} must be a finite number {'above 0' if positive else '>= 0'}")
    return number


def check_output_apart(output: str | Path, *, flag: str, input_dirs: Mapping[str, str | Path | None] = {},
                       input_files: Mapping[str, str | Path | None] = {}, writes: Iterable[str | Path] = (),
                       own: Iterable[str] = (), folder: bool = True) -> None:
    """The rule of every writer in evaluation/: it never writes onto its inputs or another tool's outputs.

    ``output`` (a folder, or with ``folder=False`` a file) must not be an input folder, lie inside one or (a
    folder) contain one; none of the paths it ``writes`` (and not ``output`` itself) may be an input file; and
    an output folder (for a file: the folder it goes into) must not hold another tool's outputs
    (:data:`pix2pix_tr.results_folder.OUTPUT_MARKERS`: test.py's ``results.json``, a training run, a compare
    page, an fcn_score report), except the files named in ``own``. Raises :class:`EvaluationError` (one sentence)
    before anything is written."""
    try:
        check_no_overlap(output, dict(input_dirs), output_flag=flag)
    except PathError as exc:
        raise EvaluationError(str(exc)) from None
    if folder:
        for what, path in input_dirs.items():
            if path is not None and is_within(path, output):
                raise EvaluationError(f"{flag} {output} contains {what} {path}: its files would be mixed with the "
                                      f"inputs; choose an {flag} apart from {path}")
    targets = [output, *writes]
    for what, path in input_files.items():
        if path is None:
            continue
        if folder and is_within(path, output):
            raise EvaluationError(f"{flag} {output} contains {what} {path}: its files would be mixed with the "
                                  f"inputs; choose an {flag} apart from {path}")
        if any(is_within(target, path) for target in targets):
            raise EvaluationError(f"{flag} {output} would write onto {what} {path}; choose another {flag}")
    holder = Path(output) if folder else Path(output).parent
    foreign = foreign_outputs(holder, own=own)
    if foreign is not None:
        raise EvaluationError(f"{flag} {output}: {holder} holds {foreign}, and this tool must not write into another "
                              f"tool's output folder; choose a new {flag}")


def check_output_dir_usable(output: str | Path, *, flag: str) -> None:
    """Without creating anything: ``output`` can become a folder we write in (it is one, or its nearest existing
    parent is a writable folder). One sentence otherwise, so that a long run is not wasted on an unusable path."""
    path = Path(output)
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise EvaluationError(f"{flag} {output} cannot be a folder because {existing} is a file: pass a folder path, "
                              f"or move the file away")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EvaluationError(f"{flag} {output} cannot be written ({existing} is not writable): pass a folder you can "
                              f"write to")


def prepare_output_dir(output: str | Path, *, flag: str) -> Path:
    """Create an output folder (with parents) and check it is writable: one sentence otherwise."""
    try:
        return ensure_writable_dir(output, flag=flag)
    except PathError as exc:
        raise EvaluationError(str(exc)) from None


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main``; an :class:`EvaluationError` becomes ``error: ...`` on stderr and exit status 2, a
    :class:`DivergedError` the same line and exit status 1 (divergence), a full disk exit status 3."""

    def guarded(args: Sequence[str] | None) -> int | None:
        try:
            return main(args)
        except DivergedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return _run_cli(guarded, argv, user_errors=EvaluationError)

