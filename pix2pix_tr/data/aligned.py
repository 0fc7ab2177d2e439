"""The aligned A|B dataset of pix2pix, with a reproducible per-sample random draw.

Each file under ``dataroot/phase`` holds one training pair side by side: the left half is A, the right half is B
(``datasets/prepare_cityscapes_dataset.py`` writes photo | colour label, so labels->photo is
``direction="BtoA"``). Both halves get the *same* random resize/crop/flip, so pixel (i, j) of A still
corresponds to pixel (i, j) of B.

Differences from the original pix2pix ``AlignedDataset`` (the option names and defaults are the same):

* The random draw of sample ``i`` in epoch ``e`` is a function of ``(seed, e, i)`` only
  (``numpy.random.default_rng([seed, e, i])``), not of a global RNG whose state depends on worker processes,
  on how many samples were drawn before, or on a resumed run. Index the dataset with the ``(epoch, index)`` pairs
  that :class:`~pix2pix_tr.data.sampler.EpochSampler` yields; a plain ``int`` index means epoch 0.
* Bad files fail early with one sentence naming the file (:class:`~pix2pix_tr.data.errors.DatasetError`); a
  split that its manifest marks incomplete (an interrupted ``prepare_cityscapes_dataset.py``) is refused with the
  command that finishes it (:mod:`pix2pix_tr.data.manifest`).
* Files are read as displayed (EXIF orientation applied) and 16-bit files are scaled by one fixed rule
  (:func:`pix2pix_tr.io.read_image`), never by their own maximum.
* ``preprocess="none"`` keeps the image size but rounds each side to a multiple of 4 (bicubic), as pix2pix
  does, because the U-Net/ResNet generators halve the resolution several times; for a U-Net use sizes that are a
  multiple of 2**depth (256 for ``unet_256``) or the generator will complain.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pix2pix_tr.data.device_augment import crop_flip
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.image_folder import list_images
from pix2pix_tr.data.manifest import check_complete
from pix2pix_tr.io import read_image, read_image_size

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DIRECTIONS = ("AtoB", "BtoA")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully, as :func:`pix2pix_tr.io.read_image` does (EXIF orientation applied, 16-bit files
    scaled by one fixed rule; ``"RGB"`` or ``"L"``); a missing, unreadable or truncated file raises
    :class:`DatasetError`."""
    if not os.path.lexists(path):
        raise DatasetError(f"the image {path} does not exist (was it deleted after the dataset was listed?)")
    return read_image(path, error=DatasetError)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image :func:`open_image` returns (EXIF orientation applied), from the file
    header, without decoding the pixels."""
    return read_image_size(path, error=DatasetError)


def resize_target(size: tuple[int, int], *, preprocess: str, load_size: int,
                  crop_size: int) -> tuple[int, int] | None:
    """The ``(w, h)`` one half of ``size = (w, h)`` is resized to before cropping, or None (kept as is).

    Deterministic: it depends on the size and the flags only, never on the random draw, which is why
    ``--cache_images`` can resize once per file.
    """
    w, h = size
    if preprocess == "resize_and_crop":
        return (load_size, load_size)
    if preprocess in ("scale_width", "scale_width_and_crop"):
        if w != load_size or h < crop_size:
            return (load_size, int(max(load_size * h / w, crop_size)))  # as pix2pix: truncated
        return None
    if preprocess == "none":
        rw, rh = max(4, int(round(w / 4)) * 4), max(4, int(round(h / 4)) * 4)
        return None if (rw, rh) == (w, h) else (rw, rh)
    return None


def transform_params(size: tuple[int, int], rng: np.random.Generator, *, preprocess: str, load_size: int,
                     crop_size: int) -> dict[str, Any]:
    """Draw the geometric transform of one sample (one half's ``size = (w, h)``), shared by A and B.

    Returns ``{"resize": (w, h) or None, "crop": (x, y, crop_size, crop_size) or None, "flip": bool}``. The random
    numbers are always drawn in the same order (x, y, flip), whatever the mode, so changing a flag never shifts
    the draw of other samples.
    """
    u_x, u_y, u_flip = rng.random(3)
    resize = resize_target(size, preprocess=preprocess, load_size=load_size, crop_size=crop_size)
    nw, nh = resize or size
    crop = None
    if preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
        x = int(u_x * (nw - crop_size + 1))
        y = int(u_y * (nh - crop_size + 1))
        crop = (x, y, crop_size, crop_size)
    return {"resize": resize, "crop": crop, "flip": bool(u_flip < 0.5)}


def apply_transform(img: Image.Image, params: dict[str, Any], *, no_flip: bool = False) -> Image.Image:
    """Apply :func:`transform_params`'s draw to one half (bicubic resize, as pix2pix)."""
    if params["resize"] is not None:
        img = img.resize(params["resize"], Image.BICUBIC)
    if params["crop"] is not None:
        x, y, cw, ch = params["crop"]
        img = img.crop((x, y, x + cw, y + ch))
    if params["flip"] and not no_flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def to_uint8_tensor(img: Image.Image, channels: int = 3) -> torch.Tensor:
    """PIL -> uint8 tensor (C, H, W); ``channels=1`` converts to grayscale first."""
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1)


def to_tensor(img: Image.Image, channels: int = 3) -> torch.Tensor:
    """PIL -> float tensor (C, H, W) in [-1, 1]; ``channels=1`` converts to grayscale first."""
    return to_uint8_tensor(img, channels).float().div_(127.5).sub_(1.0)


def _pil(t: torch.Tensor) -> Image.Image:
    """An (h, w, c) uint8 tensor -> a PIL image of its own (RGB, or L for one channel)."""
    arr = t.numpy()
    return Image.fromarray(arr[:, :, 0].copy() if arr.shape[2] == 1 else arr.copy(), "L" if arr.shape[2] == 1 else "RGB")


def sample_key(key) -> tuple[int, int]:
    """``(epoch, index)`` from what a sampler yields: an ``(epoch, index)`` pair or a plain index (epoch 0)."""
    if isinstance(key, (tuple, list)):
        if len(key) != 2:
            raise TypeError(f"a dataset key is an index or an (epoch, index) pair, got {key!r}")
        return int(key[0]), int(key[1])
    if isinstance(key, torch.Tensor):
        key = key.item()
    return 0, int(key)


class AlignedDataset(torch.utils.data.Dataset):
    """Side-by-side A|B pairs from ``root/phase`` (recursively; png, jpg, jpeg, bmp, webp).

    Args:
        root: the dataset folder (``--dataroot``); images are read from ``root/phase``.
        phase: ``"train"``, ``"val"`` or ``"test"``.
        direction: ``"AtoB"`` (the model input ``item["A"]`` is the left half) or ``"BtoA"`` (the halves are
            swapped, so ``item["A"]`` is still the model input: for our Cityscapes pairs, the colour label).
        preprocess: ``resize_and_crop`` (resize each half to ``load_size`` square, random ``crop_size`` crop; the
            pix2pix default 286 -> 256 jitter), ``crop`` (random crop of the original), ``scale_width`` (width to
            ``load_size``, height keeps the aspect, at least ``crop_size``), ``scale_width_and_crop`` (then a
            random ``crop_size`` crop), ``none`` (keep the size, rounded to a multiple of 4).
        load_size, crop_size: as in pix2pix.
        no_flip: disable the random horizontal flip (a flip, when drawn, applies to both halves).
        max_dataset_size: use only the first N files (sorted by path).
        seed: the random draw of sample ``i`` in epoch ``e`` is a function of ``(seed, e, i)``.
        input_nc, output_nc: 1 reads that side as grayscale (as pix2pix's ``--input_nc 1``).
        cache_images: decode every file and resize its halves once, at construction, into shared memory that
            DataLoader workers read (:mod:`pix2pix_tr.data.cache`); the items are identical, only the per-epoch
            decoding and resizing are gone.
        augment_on_device: leave the random crop, the flip and the conversion to float to the training device
            (:func:`pix2pix_tr.data.device_augment.crop_flip`): items hold the resized, uncropped halves as
            ``(H, W, C)`` ``uint8`` (a quarter of the bytes of float, and a plain copy out of the cache) plus the
            draw (``"crop"``: ``[x, y]``, ``"flip"``).
            Every file's resized halves must then have one size (always so under ``resize_and_crop``), so that a
            batch can be stacked. :meth:`to_device` turns a batch into exactly the tensors of the default path.

    ``dataset[i]`` or ``dataset[(epoch, i)]`` is ``{"A": (C, H, W) float tensor in [-1, 1], "B": ..., "A_paths":
    str, "B_paths": str, "name": file stem}``. Both paths are the A|B file, as in pix2pix.
    (With ``augment_on_device``, "A" and "B" are uint8 and "crop", "flip" are added; see above.)

    Raises :class:`DatasetError` (at construction, from the file headers) for a missing or empty folder, an odd
    width, halves that are not square under ``resize_and_crop``, halves smaller than ``crop_size`` under
    ``crop``, and unreadable files; a file that turns out corrupt when decoded raises it from ``__getitem__``.
    """

    def __init__(self, root, phase: str = "train", *, direction: str = "AtoB", preprocess: str = "resize_and_crop",
                 load_size: int = 286, crop_size: int = 256, no_flip: bool = False,
                 max_dataset_size: float = math.inf, seed: int = 0, input_nc: int = 3, output_nc: int = 3,
                 cache_images: bool = False, augment_on_device: bool = False):
        if direction not in DIRECTIONS:
            raise DatasetError(f"--direction must be AtoB or BtoA, got {direction!r}")
        if preprocess not in PREPROCESS_MODES:
            raise DatasetError(f"--preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {preprocess!r}")
        if int(crop_size) < 1 or int(load_size) < 1:
            raise DatasetError(f"--load_size and --crop_size must be positive, got {load_size} and {crop_size}")
        if preprocess in ("resize_and_crop", "scale_width_and_crop") and load_size < crop_size:
            raise DatasetError(f"--load_size ({load_size}) must be >= --crop_size ({crop_size}) with --preprocess "
                               f"{preprocess}: the crop is taken from the resized image")
        if max_dataset_size is None:
            max_dataset_size = math.inf
        if not max_dataset_size >= 1:
            raise DatasetError(f"--max_dataset_size must be >= 1, got {max_dataset_size}")
        for name, nc in (("input_nc", input_nc), ("output_nc", output_nc)):
            if nc not in (1, 3):
                raise DatasetError(f"--{name} must be 1 or 3 for image data, got {nc}")
        self.root = Path(root)
        self.phase = phase
        self.dir = self.root / phase
        if not self.dir.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            hint = f" (it has: {', '.join(found[:6])})" if found else ""
            raise DatasetError(f"the dataset folder {self.dir} does not exist{hint}: pass --dataroot pointing at a "
                               f"folder with {phase}/ inside, or a different --phase")
        check_complete(self.root, phase, what="split")  # an interrupted preparation is not a dataset
        paths = list_images(self.dir, what=f"{phase} folder")
        if max_dataset_size < len(paths):
            paths = paths[: int(max_dataset_size)]
        self.paths = paths
        self.direction = direction
        self.preprocess = preprocess
        self.load_size, self.crop_size = int(load_size), int(crop_size)
        self.no_flip = bool(no_flip)
        self.seed = int(seed)
        self.input_nc, self.output_nc = int(input_nc), int(output_nc)
        self.sizes = []  # (w, h) of each file, from its header
        for path in self.paths:
            self.sizes.append(image_size(path))
            self._check_size(path, self.sizes[-1])
        self.augment_on_device = bool(augment_on_device)
        self.output_size = self._device_output_size() if self.augment_on_device else None
        self.cache = None
        if cache_images:
            from pix2pix_tr.data.cache import DecodedImageCache

            # RGB halves after the resize (a grayscale file takes a third of that)
            expected = sum(2 * 3 * math.prod(self._resized_size(size)) for size in self.sizes)
            self.cache = DecodedImageCache(range(len(self.paths)), lambda i: self.resized_pair(i)[:2],
                                           expected_nbytes=expected)

    def _resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        half = (size[0] // 2, size[1])
        return resize_target(half, preprocess=self.preprocess, load_size=self.load_size,
                             crop_size=self.crop_size) or half

    def _device_output_size(self) -> tuple[int, int]:
        """``(h, w)`` of the batches :meth:`to_device` makes; every file's resized halves must share one size."""
        first = self._resized_size(self.sizes[0])
        for path, size in zip(self.paths, self.sizes):
            if self._resized_size(size) != first:
                raise DatasetError(
                    f"--augment_on_device needs every training pair to have one size after --preprocess "
                    f"{self.preprocess}, but {self.paths[0]} gives {first[0]}x{first[1]} halves and {path} "
                    f"{self._resized_size(size)[0]}x{self._resized_size(size)[1]}: use --preprocess "
                    "resize_and_crop, resize the files to one size, or drop --augment_on_device")
        if self.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
            return (self.crop_size, self.crop_size)
        return (first[1], first[0])

    def _check_size(self, path: Path, size: tuple[int, int]) -> None:
        w, h = size
        if w % 2:
            raise DatasetError(f"the image {path} is {w}x{h}: an A|B pair needs an even width (A left, B right); "
                               "re-create it with datasets/combine_A_and_B.py")
        half = w // 2
        if self.preprocess == "resize_and_crop" and half != h:
            raise DatasetError(f"the image {path} is {w}x{h}, but --preprocess resize_and_crop needs the width to be "
                               "twice the height (two square halves): use --preprocess scale_width_and_crop for "
                               "non-square halves")
        if self.preprocess == "crop" and (half < self.crop_size or h < self.crop_size):
            raise DatasetError(f"the image {path} has {half}x{h} halves, smaller than --crop_size {self.crop_size}: "
                               "lower --crop_size or use --preprocess resize_and_crop")

    def __len__(self) -> int:
        return len(self.paths)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator for sample ``index`` in ``epoch``: nothing else influences its draw."""
        return np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, int(epoch), int(index)])

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The untransformed (left, right) halves of file ``index``, read from the file."""
        path = self.paths[index]
        ab = open_image(path)
        w, h = ab.size
        self._check_size(path, (w, h))  # the file may have changed since it was listed
        if self.augment_on_device and self._resized_size((w, h)) != self._resized_size(self.sizes[index]):
            raise DatasetError(f"the image {path} changed size since the dataset was listed ({w}x{h} now); "
                               "--augment_on_device needs one size for all pairs: restart the run")
        half = w // 2
        return ab.crop((0, 0, half, h)), ab.crop((half, 0, w, h))

    def resized_pair(self, index: int) -> tuple[Image.Image, Image.Image, tuple[int, int]]:
        """``(left, right, half_size)``: the halves of file ``index`` read from the file and put through the
        deterministic resize, and the size of one half before it (the random draw depends on it)."""
        left, right = self.load_pair(index)
        target = resize_target(left.size, preprocess=self.preprocess, load_size=self.load_size,
                               crop_size=self.crop_size)
        size = left.size
        if target is not None:
            left, right = left.resize(target, Image.BICUBIC), right.resize(target, Image.BICUBIC)
        return left, right, size

    def __getitem__(self, key) -> dict[str, Any]:
        epoch, index = sample_key(key)
        if not 0 <= index < len(self.paths):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.paths)} images")
        if self.cache is not None:  # (h, w, c) uint8 views of the shared buffer, resized already
            left, right = self.cache.tensors(index)
            w, h = self.sizes[index]
            size = (w // 2, h)
        else:
            left, right, size = self.resized_pair(index)
        if self.direction == "BtoA":
            left, right = right, left
        params = transform_params(size, self.rng(epoch, index), preprocess=self.preprocess,
                                  load_size=self.load_size, crop_size=self.crop_size)
        path = str(self.paths[index])
        item = {"A": self._finish(left, params, self.input_nc), "B": self._finish(right, params, self.output_nc),
                "A_paths": path, "B_paths": path, "name": self.paths[index].stem}
        if self.augment_on_device:
            x, y = params["crop"][:2] if params["crop"] is not None else (0, 0)
            item.update(crop=torch.tensor([x, y], dtype=torch.int64),
                        flip=torch.tensor(params["flip"] and not self.no_flip))
        return item

    def _finish(self, img, params: dict[str, Any], channels: int) -> torch.Tensor:
        """One resized half -> the item's tensor: cropped, flipped, float (or, with augment_on_device, the uint8
        (H, W, C) half as is). ``img`` is a PIL image, or a cached (h, w, c) uint8 view, handled without PIL
        when its channel count is the one wanted (the same pixels, the same float operations)."""
        if isinstance(img, torch.Tensor):
            if img.shape[2] != channels:  # a grayscale file read as RGB, or the reverse: PIL converts
                img = _pil(img)
            elif self.augment_on_device:
                return img.clone()  # (H, W, C); a copy: the item never aliases the cache
            else:
                if params["crop"] is not None:
                    x, y, cw, ch = params["crop"]
                    img = img[y:y + ch, x:x + cw]
                if params["flip"] and not self.no_flip:
                    img = img.flip(1)
                return img.contiguous().permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        if self.augment_on_device:
            return to_uint8_tensor(img, channels).permute(1, 2, 0)  # (H, W, C), contiguous
        return to_tensor(apply_transform(img, dict(params, resize=None), no_flip=self.no_flip), channels)

    def to_device(self, batch: dict[str, Any], device, memory_format=torch.contiguous_format):
        """``(real_A, real_B)`` of a collated batch on ``device``: a plain copy, or with ``augment_on_device`` the
        uint8 halves copied and cropped, flipped and converted there, equal bit for bit to the default path."""
        if not self.augment_on_device:
            return tuple(batch[k].to(device, non_blocking=True, memory_format=memory_format) for k in ("A", "B"))
        crop = batch["crop"].to(device, non_blocking=True)
        flip = batch["flip"].to(device, non_blocking=True)
        return tuple(crop_flip(batch[k].to(device, non_blocking=True), crop, flip, self.output_size,
                               memory_format=memory_format) for k in ("A", "B"))

    def __repr__(self) -> str:
        return (f"AlignedDataset({str(self.dir)!r}, {len(self)} images, direction={self.direction}, "
                f"preprocess={self.preprocess}, load_size={self.load_size}, crop_size={self.crop_size}, "
                f"no_flip={self.no_flip}, seed={self.seed}"
                + (", augment_on_device=True" if self.augment_on_device else "") + ")")
