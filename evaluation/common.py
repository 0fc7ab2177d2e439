"""Shared plumbing of the evaluator: errors, Cityscapes file discovery, image loading, devices and CLI exits.

It imports no other evaluation module but :mod:`evaluation.labels`; each command's entry point lives in its own
module (``evaluation.fcn_score:command``, ``evaluation.train_scorer:command``, ...)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from evaluation.labels import ids_to_train_ids
from pix2pix_tr.cli import resolve_device as _resolve_device
from pix2pix_tr.cli import run_cli as _run_cli


class EvaluationError(ValueError):
    """Bad input to the evaluator (a path, a flag, a checkpoint). The CLIs print it as one line and exit 2."""


class ScorerCheckpointError(EvaluationError):
    """A scorer checkpoint that is missing, unreadable, or does not match what it is used for."""


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


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main``; an :class:`EvaluationError` becomes ``error: ...`` on stderr and exit status 2."""
    return _run_cli(main, argv, user_errors=EvaluationError)

