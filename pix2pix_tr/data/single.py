"""Single input images (``test.py --dataset_mode single``, :class:`pix2pix_tr.Translator`) and test-time preprocessing.

Three things live here, all used at test time only:

* :class:`TestPreprocess` / :func:`test_transform`: the *deterministic* version of the training preprocessing
  (``--preprocess --load_size --crop_size``): the same bicubic resize, then a **centre** crop (never a random
  one) and no flip. test.py's aligned mode, its single mode and the Translator all go through it, so one label
  map gives the same network input whichever way it comes in.
* :func:`read_input_image`: one input file (or PIL image / array) as the generator was trained to see it. A colour
  label map (the Cityscapes palette) is used as it is; a single-channel label map is recognised by its values
  (Cityscapes label ids 0..33, or train ids 0..18 with 255 for "ignored") and coloured with the label table of
  :mod:`pix2pix_tr.cityscapes_labels`, because a labels->photo generator was trained on the colour maps.
* Recognising the wrong kind of file by content: :func:`pair_reason` says why an image looks like an A|B pair
  (refused by single mode), :func:`single_reason` why an image given as an A|B pair looks like one single image
  (refused by aligned mode). Both are conservative: they answer only on strong evidence (a photo half beside a
  palette half; a label map as a whole; two halves whose edges coincide with a hard seam between them), so an
  unusual but legitimate input is never refused.

:class:`SingleDataset` lists the inputs of single mode: a folder (recursively), a text file of paths (one per
line, relative to the list's folder; blank lines and ``#`` comments skipped) or one image file.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from pix2pix_tr.cityscapes_labels import IGNORE_INDEX, LABELS, NUM_CLASSES, ids_to_color, train_ids_to_color
from pix2pix_tr.data.aligned import PREPROCESS_MODES, open_image, resize_target, to_tensor
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.image_folder import is_image_file, list_images

__all__ = ["TestPreprocess", "test_transform", "LABEL_FORMATS", "read_input_image", "label_values_kind",
           "palette_fraction", "pair_reason", "single_reason", "list_inputs", "SingleDataset"]

#: ``--label_format``: how a single-channel input is read (``auto`` recognises it by its values).
LABEL_FORMATS = ("auto", "color", "label_ids", "train_ids")

_PALETTE = np.array(sorted({label.color for label in LABELS}), dtype=np.int16)  # the 30 distinct colours
_LABEL_IDS = {label.id for label in LABELS if label.id >= 0}  # 0..33
_TRAIN_IDS = set(range(NUM_CLASSES)) | {IGNORE_INDEX}


# ------------------------------------------------------------------------------------------------ preprocessing
@dataclass(frozen=True)
class TestPreprocess:
    """The test-time preprocessing of a run: pix2pix's ``--preprocess`` with its sizes, made deterministic."""

    preprocess: str = "resize_and_crop"
    load_size: int = 256
    crop_size: int = 256

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_MODES:
            raise DatasetError(f"--preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {self.preprocess!r}")
        if int(self.load_size) < 1 or int(self.crop_size) < 1:
            raise DatasetError(f"--load_size and --crop_size must be positive, got {self.load_size} and "
                               f"{self.crop_size}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            raise DatasetError(f"--load_size ({self.load_size}) must be >= --crop_size ({self.crop_size}) with "
                               f"--preprocess {self.preprocess}: the crop is taken from the resized image")

    def geometry(self, size: tuple[int, int]) -> tuple[tuple[int, int] | None, tuple[int, int, int, int] | None]:
        """``(resize, crop)`` for an input of ``size = (w, h)``: the ``(w, h)`` it is resized to (None: kept) and
        the centre crop box ``(x, y, w, h)`` (None: no crop, or a crop that would keep the whole image)."""
        resize = resize_target(size, preprocess=self.preprocess, load_size=self.load_size, crop_size=self.crop_size)
        w, h = resize or size
        if self.preprocess not in ("resize_and_crop", "crop", "scale_width_and_crop"):
            return resize, None
        if w < self.crop_size or h < self.crop_size:
            raise DatasetError(f"an input of {size[0]}x{size[1]} is smaller than --crop_size {self.crop_size} after "
                               f"--preprocess {self.preprocess}: lower --crop_size or use --preprocess resize_and_crop")
        if (w, h) == (self.crop_size, self.crop_size):
            return resize, None
        return resize, ((w - self.crop_size) // 2, (h - self.crop_size) // 2, self.crop_size, self.crop_size)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(w, h)`` of the network input made from an input of ``size``."""
        resize, crop = self.geometry(size)
        return (crop[2], crop[3]) if crop is not None else (resize or size)

    def shows_full_frame(self, size: tuple[int, int]) -> bool:
        """False when the centre crop cuts part of the (resized) image away."""
        return self.geometry(size)[1] is None

    def record(self, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """What ``results.json`` records as ``test_preprocess`` for inputs of these sizes."""
        full = all(self.shows_full_frame(s) for s in sizes)
        return {**asdict(self), "crop": "none" if full else "center", "full_frame": full}

    def describe(self) -> str:
        """One phrase for the gallery header: what happens to an input."""
        if self.preprocess == "resize_and_crop":
            if self.load_size == self.crop_size:
                return f"resized to {self.crop_size}x{self.crop_size}"
            return (f"resized to {self.load_size}x{self.load_size}, then its centre {self.crop_size}x{self.crop_size} "
                    f"(not the full frame)")
        if self.preprocess == "crop":
            return f"centre {self.crop_size}x{self.crop_size} crop (no resize)"
        if self.preprocess == "scale_width":
            return f"width scaled to {self.load_size}"
        if self.preprocess == "scale_width_and_crop":
            return f"width scaled to {self.load_size}, then the centre {self.crop_size}x{self.crop_size}"
        return "original size (sides rounded to a multiple of 4)"


def test_transform(img: Image.Image, spec: TestPreprocess) -> Image.Image:
    """The deterministic test-time transform of one image (one half of an A|B pair, or a single input): the bicubic
    resize of training, then a centre crop; never a flip. The same PIL operations as the training path, so at
    ``load_size == crop_size`` the pixels equal what the aligned dataset produces."""
    resize, crop = spec.geometry(img.size)
    if resize is not None:
        img = img.resize(resize, Image.BICUBIC)
    if crop is not None:
        x, y, cw, ch = crop
        img = img.crop((x, y, x + cw, y + ch))
    return img


# ------------------------------------------------------------------------------------------------ label maps
_NEAR_PALETTE: np.ndarray | None = None  # (128, 128, 128) bools, built on first use


def _near_palette_table() -> np.ndarray:
    """A lookup table over colours quantised to 7 bits per channel: True within about 8 levels (per channel) of a
    Cityscapes palette colour. 2 MB, built once per process."""
    global _NEAR_PALETTE
    if _NEAR_PALETTE is None:
        table = np.zeros((128, 128, 128), dtype=bool)
        for r, g, b in _PALETTE.tolist():
            lo = [max(0, c - 8) >> 1 for c in (r, g, b)]
            hi = [min(255, c + 8) >> 1 for c in (r, g, b)]
            table[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        _NEAR_PALETTE = table
    return _NEAR_PALETTE


def palette_fraction(rgb: np.ndarray, *, max_samples: int = 16384) -> float:
    """Share of the pixels of an ``(H, W, 3)`` uint8 image within about 8 levels (per channel) of a Cityscapes
    palette colour (a JPEG-compressed or blended label map still scores high, a photo low); a regular subsample
    of at most about ``max_samples`` pixels is looked at."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.size == 0:
        return 0.0
    step = max(1, int(math.ceil(math.sqrt(rgb.shape[0] * rgb.shape[1] / max_samples))))
    q = rgb[::step, ::step, :3].astype(np.uint8) >> 1
    return float(_near_palette_table()[q[..., 0], q[..., 1], q[..., 2]].mean())


def label_values_kind(values: np.ndarray) -> str | None:
    """What a single-channel map's values say it is: ``"label_ids"`` (Cityscapes ids 0..33, some above 18),
    ``"train_ids"`` (0..18 plus 255), ``"ambiguous"`` (only values 0..18: either), or None (not a label map:
    too many values, values outside both sets, or not piecewise constant)."""
    values = np.asarray(values)
    if values.ndim != 2 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        return None
    present = np.unique(values)
    if present.size > len(_LABEL_IDS) or present.min() < 0:
        return None
    flat = float((values[:, 1:] == values[:, :-1]).mean()) if values.shape[1] > 1 else 1.0
    if flat < 0.7:  # a label map is made of regions; a (dark) photo is not
        return None
    found = set(present.tolist())
    if found <= set(range(NUM_CLASSES)):
        return "ambiguous"
    if found <= _TRAIN_IDS:
        return "train_ids"
    if found <= _LABEL_IDS:
        return "label_ids"
    return None


def _single_channel_values(img: Image.Image) -> np.ndarray | None:
    """The raw values of a one-channel image (8 or 16 bit, or RGB with three equal channels), else None."""
    if img.mode in ("L", "I", "I;16", "I;16B", "I;16L", "1"):
        return np.asarray(img).astype(np.int64)
    if img.mode in ("RGB", "RGBA", "P", "LA"):
        rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        probe = rgb[::7, ::7]  # a colour image is told apart on a subsample, without touching every pixel
        if not ((probe[..., 0] == probe[..., 1]).all() and (probe[..., 1] == probe[..., 2]).all()):
            return None
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0].astype(np.int64)
    return None


def _colour_labels(values: np.ndarray, kind: str) -> Image.Image:
    colour = ids_to_color(values.astype(np.uint8)) if kind == "label_ids" else train_ids_to_color(values.astype(np.uint8))
    return Image.fromarray(colour, "RGB")


def read_input_image(source, *, input_nc: int = 3, label_format: str = "auto",
                     name: str | None = None) -> tuple[Image.Image, str]:
    """One single input as the generator was trained to see it: ``(PIL image, kind)``.

    ``source`` is a path, a PIL image or an ``(H, W[, C])`` uint8 array. ``kind`` is ``"label_ids"`` or
    ``"train_ids"`` (a single-channel Cityscapes label map, returned coloured with the official palette),
    ``"color"`` (``label_format="color"``: used as it is), or ``"image"`` (anything else, decoded as the aligned
    dataset decodes its files). Label maps are coloured only for a 3-channel generator (``input_nc=3``): a
    labels->photo generator was trained on the colour maps. ``label_format`` forces the reading of a
    single-channel map; ``auto`` refuses a map whose values fit both tables (only 0..18) in one sentence.
    """
    if label_format not in LABEL_FORMATS:
        raise DatasetError(f"--label_format must be one of {', '.join(LABEL_FORMATS)}, got {label_format!r}")
    where = name or (str(source) if isinstance(source, (str, os.PathLike)) else "the input image")
    if isinstance(source, (str, os.PathLike)):
        img = _open_raw(source)
    elif isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _array_to_image(source, where)
    else:
        raise DatasetError(f"{where}: expected a file path, a PIL image or a numpy array, got {type(source).__name__}")
    if input_nc == 3 and label_format != "color":
        values = _single_channel_values(img)
        kind = label_values_kind(values) if values is not None and label_format == "auto" else None
        if values is not None and label_format in ("label_ids", "train_ids"):
            kind = label_format
            allowed = _LABEL_IDS if kind == "label_ids" else _TRAIN_IDS
            bad = sorted(set(np.unique(values).tolist()) - allowed)
            if bad:
                raise DatasetError(f"{where} holds values {bad[:5]} that are not Cityscapes "
                                   f"{kind.replace('_', ' ')}: check the file, or drop --label_format {kind}")
        if kind == "ambiguous":
            raise DatasetError(f"{where} is a single-channel label map whose values (all in 0..18) read both as "
                               f"Cityscapes label ids and as train ids: pass --label_format label_ids or "
                               f"--label_format train_ids (Translator: label_format=...)")
        if kind in ("label_ids", "train_ids"):
            return _colour_labels(values, kind), kind
    if isinstance(source, (str, os.PathLike)):
        return open_image(source), "color" if label_format == "color" else "image"
    return _as_rgb_or_l(img), "color" if label_format == "color" else "image"


def _open_raw(path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError:
        raise DatasetError(f"the image {path} does not exist: check the path") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise DatasetError(f"cannot read the image {path} ({type(exc).__name__}: {exc}): the file is corrupt or "
                           "not an image; re-create or remove it") from None


def _array_to_image(arr: np.ndarray, where: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 255:
        return Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)), "L")
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), "RGB")
    raise DatasetError(f"{where}: a numpy input must be an (H, W, 3) or (H, W) uint8 array, got shape {arr.shape} "
                       f"and dtype {arr.dtype} (tensors in [-1, 1] go in as torch tensors)")


def _as_rgb_or_l(img: Image.Image) -> Image.Image:
    if img.mode in ("RGB", "L"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(arr / (65535.0 if arr.max() > 255 else 255.0) * 255 + 0.5, 0, 255)
                               .astype(np.uint8), "L")
    return img.convert("RGB")


# ------------------------------------------------------------------------------------------------ pair or single?
def _small(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """``rgb`` as float32 ``(H, W, C)``, subsampled regularly to at most about ``max_pixels`` pixels."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = a[:, :, None]
    step = max(1, int(math.ceil(math.sqrt(a.shape[0] * a.shape[1] / max_pixels))))
    return a[::step, ::step].astype(np.float32)


def _edges(a: np.ndarray) -> np.ndarray:
    """Blurred gradient magnitude of a float (H, W, C) image."""
    e = np.abs(np.diff(a, axis=1)).sum(-1)[:-1, :] + np.abs(np.diff(a, axis=0)).sum(-1)[:, :-1]
    p = np.pad(e, 1, mode="edge")
    return sum(p[i:i + e.shape[0], j:j + e.shape[1]] for i in range(3) for j in range(3)) / 9.0


def halves_alignment(rgb: np.ndarray) -> float:
    """Correlation of the edge maps of the left and right halves: high (0.3 and more on labels->photo pairs) when
    they show one scene (an A|B pair), near 0 for the two halves of one image."""
    h, w = np.asarray(rgb).shape[:2]
    half = w // 2
    if half < 4 or h < 4:
        return 0.0
    left, right = (_edges(_small(part, 16384)) for part in (rgb[:, :half], rgb[:, half:2 * half]))
    rows, cols = min(left.shape[0], right.shape[0]), min(left.shape[1], right.shape[1])
    left, right = left[:rows, :cols].ravel(), right[:rows, :cols].ravel()
    left, right = left - left.mean(), right - right.mean()
    denom = math.sqrt(float((left * left).sum()) * float((right * right).sum()))
    return float((left * right).sum() / denom) if denom > 0 else 0.0


def _seam_ratio(rgb: np.ndarray) -> float:
    """How much the two middle columns differ, relative to the typical difference of neighbouring columns."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = a[:, :, None]
    a = a[:: max(1, a.shape[0] // 128)].astype(np.float32)  # at most about 128 rows
    diffs = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))
    return float(diffs[a.shape[1] // 2 - 1] / max(float(np.median(diffs)), 1.0))


def pair_reason(img: Image.Image) -> str | None:
    """Why ``img`` looks like an A|B pair rather than one image (None: it does not). Two cues: one half is a
    colour label map and the other is not (a photo beside its labels); or the halves' edges coincide and the
    middle of the image is a hard seam."""
    rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    h, w = rgb.shape[:2]
    if w % 2 or w < 8:
        return None
    left, right = palette_fraction(rgb[:, : w // 2]), palette_fraction(rgb[:, w // 2:])
    if max(left, right) >= 0.9 and min(left, right) <= 0.5:
        sides = ("left", "right") if left > right else ("right", "left")
        return f"its {sides[1]} half is a photo and its {sides[0]} half a colour label map"
    if halves_alignment(rgb) >= 0.3 and _seam_ratio(rgb) >= 4:
        return "its two halves show one scene side by side (their edges coincide, with a hard seam in the middle)"
    return None


def single_reason(img: Image.Image) -> str | None:
    """Why ``img``, given as an A|B pair, looks like one single image (None: it does not): a single-channel label
    map, or a colour label map as a whole (no photo half) whose halves do not show one scene."""
    values = _single_channel_values(img)
    if values is not None and label_values_kind(values) is not None:
        return "it is a single-channel label map (Cityscapes label ids or train ids), not a photo beside a label map"
    rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    w = rgb.shape[1]
    # (two label maps of one scene, a label|label pair, have coinciding edges: alignment near 1)
    if w >= 8 and palette_fraction(rgb[:, : w // 2]) >= 0.9 and palette_fraction(rgb[:, w // 2:]) >= 0.9 \
            and halves_alignment(rgb) < 0.5:
        return "the whole image is one colour label map, not a photo beside a label map"
    return None


# ------------------------------------------------------------------------------------------------ the inputs
def list_inputs(source: str | os.PathLike) -> list[Path]:
    """The input images of single mode: a folder (recursively, sorted), a text file of paths, or one image."""
    path = Path(source)
    if path.is_dir():
        return list_images(path, what="input folder")
    if not path.exists():
        raise DatasetError(f"{path} does not exist: pass --dataroot a folder of images, a text file listing image "
                           f"paths, or one image")
    if is_image_file(path):
        return [path]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is neither an image (png, jpg, jpeg, bmp, webp) nor a readable text file listing "
                           f"image paths ({type(exc).__name__}): pass a folder, a list or one image") from None
    paths = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        item = Path(line) if Path(line).is_absolute() else path.parent / line
        if not item.is_file():
            raise DatasetError(f"{path} line {number}: {item} is not a file; fix the list (paths are relative to "
                               f"the list's folder)")
        if not is_image_file(item):
            raise DatasetError(f"{path} line {number}: {item} is not an image (png, jpg, jpeg, bmp, webp)")
        paths.append(item)
    if not paths:
        raise DatasetError(f"the list {path} names no image: put one image path per line")
    return paths


class SingleDataset(torch.utils.data.Dataset):
    """Single input images for ``test.py --dataset_mode single``.

    ``dataset[i]`` is ``{"A": (input_nc, H, W) float tensor in [-1, 1], "A_paths": str, "name": file stem,
    "kind": what the file was read as}``: the file read with :func:`read_input_image` (label maps coloured) and
    put through :func:`test_transform`. An input that looks like an A|B pair (:func:`pair_reason`) raises
    :class:`DatasetError` saying that aligned mode fits.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], spec: TestPreprocess, *, input_nc: int = 3,
                 label_format: str = "auto", max_dataset_size: float = math.inf, check_pairs: bool = True):
        if input_nc not in (1, 3):
            raise DatasetError(f"--input_nc must be 1 or 3 for image data, got {input_nc}")
        self.paths = [Path(p) for p in paths]
        if max_dataset_size is not None and max_dataset_size < len(self.paths):
            self.paths = self.paths[: int(max_dataset_size)]
        self.spec = spec
        self.input_nc = int(input_nc)
        self.label_format = label_format
        self.check_pairs = bool(check_pairs)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[Image.Image, str]:
        """The file ``index`` read as an input (before the resize and crop), and its kind."""
        path = self.paths[index]
        img, kind = read_input_image(path, input_nc=self.input_nc, label_format=self.label_format)
        if self.check_pairs and kind in ("image", "color"):
            reason = pair_reason(img)
            if reason is not None:
                raise DatasetError(f"{path} looks like an A|B pair, not a single image ({reason}): run test.py "
                                   f"with --dataset_mode aligned --dataroot {path.parent.parent} --phase "
                                   f"{path.parent.name} (aligned mode reads the A|B pairs of DATAROOT/PHASE)")
        return img, kind

    def __getitem__(self, index) -> dict[str, Any]:
        index = int(index)
        img, kind = self.load(index)
        return {"A": to_tensor(test_transform(img, self.spec), self.input_nc), "A_paths": str(self.paths[index]),
                "name": self.paths[index].stem, "kind": kind}
