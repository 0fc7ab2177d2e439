"""What test.py reads: A|B pairs (``--dataset_mode aligned``, the default) or single images (``single``).

Both go through the same deterministic test-time preprocessing (:func:`pix2pix_tr.data.single.test_transform`:
the training resize, a centre crop, no flip), so a label map gives the same network input alone or as the B half
of a pair. Before anything is written, the inputs are checked against the mode: a folder of single images given
to aligned mode, or of A|B pairs given to single mode, is refused in one sentence that names the mode that fits
(by content: :func:`~pix2pix_tr.data.single.single_reason`, :func:`~pix2pix_tr.data.single.pair_reason`);
every item is checked again as it is read, so a folder that mixes the two stops at the first misfit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from pix2pix_tr.data.aligned import AlignedDataset, image_size, to_tensor
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.image_folder import list_images
from pix2pix_tr.data.single import SingleDataset, TestPreprocess, list_inputs, single_reason, test_transform

__all__ = ["DATASET_MODES", "AlignedTestDataset", "make_test_dataset", "input_sizes"]

DATASET_MODES = ("aligned", "single")


def _spread(n: int, k: int = 3) -> list[int]:
    """Up to ``k`` indices spread over ``range(n)`` (first, middle, last): the files checked before writing."""
    return sorted({0, n // 2, n - 1}) if n >= k else list(range(n))


def _single_advice(path: Path, reason: str, folder: Path) -> str:
    return (f"{path} looks like a single image, not an A|B pair ({reason}): run test.py with --dataset_mode single "
            f"--dataroot {folder} (single mode reads plain images: a folder, a list of paths, or one file)")


class AlignedTestDataset(torch.utils.data.Dataset):
    """test.py's A|B pairs: the listing, size checks and decoding of :class:`AlignedDataset`, with the
    deterministic test-time transform on each half. Items are ``{"A", "B", "A_paths", "B_paths", "name"}``;
    ``A`` is the network input (the right half for ``BtoA``)."""

    def __init__(self, root, phase: str, *, direction: str, spec: TestPreprocess, input_nc: int = 3,
                 output_nc: int = 3, max_dataset_size: float = math.inf, check: bool = True):
        folder = Path(root) / phase
        if folder.is_dir():
            paths = list_images(folder, what=f"{phase} folder")
            if max_dataset_size is not None and max_dataset_size < len(paths):
                paths = paths[: int(max_dataset_size)]
            sizes = [image_size(p) for p in paths]
            for path, (w, h) in zip(paths, sizes):  # before AlignedDataset's own check, whose advice is for training
                if w % 2 or (spec.preprocess == "resize_and_crop" and w // 2 != h):
                    reason = single_reason(_open(path)) if check else None
                    if reason is not None:
                        raise DatasetError(_single_advice(path, reason, folder))
                    raise DatasetError(
                        f"{path} is {w}x{h}, not an A|B pair of two square halves side by side, which test.py's "
                        f"aligned mode reads with --preprocess {spec.preprocess}: if the folder holds single images, "
                        f"run with --dataset_mode single; A|B pairs are made by datasets/combine_A_and_B.py")
        self.base = AlignedDataset(root, phase=phase, direction=direction, preprocess=spec.preprocess,
                                   load_size=spec.load_size, crop_size=spec.crop_size, no_flip=True,
                                   max_dataset_size=max_dataset_size, input_nc=input_nc, output_nc=output_nc)
        self.paths, self.spec, self.check = self.base.paths, spec, bool(check)
        self.direction, self.input_nc, self.output_nc = direction, int(input_nc), int(output_nc)
        if self.check:
            for i in _spread(len(self.paths)):
                self._check(i, *self.base.load_pair(i))

    def half_sizes(self) -> list[tuple[int, int]]:
        return [(w // 2, h) for w, h in self.base.sizes]

    def _check(self, index: int, left: Image.Image, right: Image.Image) -> None:
        whole = Image.fromarray(np.concatenate([np.asarray(left), np.asarray(right)], axis=1), left.mode)
        reason = single_reason(whole)
        if reason is not None:
            raise DatasetError(_single_advice(self.paths[index], reason, self.base.dir))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> dict[str, Any]:
        index = int(index)
        left, right = self.base.load_pair(index)
        if self.check:
            self._check(index, left, right)
        if self.direction == "BtoA":
            left, right = right, left
        path = str(self.paths[index])
        return {"A": to_tensor(test_transform(left, self.spec), self.input_nc),
                "B": to_tensor(test_transform(right, self.spec), self.output_nc),
                "A_paths": path, "B_paths": path, "name": self.paths[index].stem}


def _open(path: Path) -> Image.Image:
    from pix2pix_tr.data.aligned import open_image

    return open_image(path)


def input_sizes(dataset) -> list[tuple[int, int]]:
    """``(w, h)`` of every input as read (one half of a pair), from the file headers."""
    if isinstance(dataset, AlignedTestDataset):
        return dataset.half_sizes()
    return [image_size(p) for p in dataset.paths]


def make_test_dataset(mode: str, dataroot, phase: str, *, direction: str, spec: TestPreprocess, input_nc: int,
                      output_nc: int, max_dataset_size: float = math.inf, label_format: str = "auto"):
    """The dataset of ``test.py --dataset_mode MODE``, its inputs checked against the mode before anything is
    written (the first, middle and last files are read). Raises DatasetError with one sentence."""
    if mode == "aligned":
        folder = Path(dataroot) / phase
        if not folder.is_dir():
            raise DatasetError(f"{folder} does not exist: --phase {phase} needs a {phase}/ folder of A|B images in "
                               f"--dataroot {dataroot} (for a folder of single images use --dataset_mode single)")
        return AlignedTestDataset(dataroot, phase, direction=direction, spec=spec, input_nc=input_nc,
                                  output_nc=output_nc, max_dataset_size=max_dataset_size)
    if mode != "single":
        raise DatasetError(f"--dataset_mode must be one of {', '.join(DATASET_MODES)}, got {mode!r}")
    dataset = SingleDataset(list_inputs(dataroot), spec, input_nc=input_nc, label_format=label_format,
                            max_dataset_size=max_dataset_size)
    for i in _spread(len(dataset)):
        dataset.load(i)  # refuses A|B pairs and ambiguous label maps before any output is written
    return dataset


def check_network_sizes(dataset, spec: TestPreprocess, netG: str) -> None:
    """Every input's network size must suit ``netG`` (side multiples); checked from the headers, before the run."""
    from pix2pix_tr.models import required_multiple

    multiple = required_multiple(netG)
    paths: Sequence[Path] = dataset.paths
    for path, size in zip(paths, input_sizes(dataset)):
        try:
            w, h = spec.output_size(size)
        except DatasetError as exc:
            raise DatasetError(f"{path}: {exc}") from None
        if w % multiple or h % multiple:
            raise DatasetError(f"{path} becomes {w}x{h} after --preprocess {spec.preprocess}, but --netG {netG} needs "
                               f"sides that are multiples of {multiple}: pass --preprocess resize_and_crop (each input "
                               f"resized to --crop_size, a multiple of {multiple}), or resize the images")
