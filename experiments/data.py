"""Image-classification data for the small-batch experiments: CIFAR from disk, or a built-in synthetic set.

Everything is held in memory as uint8 ``(N, H, W, 3)`` arrays plus int64 labels (:class:`ImageSet`), and batches
are cut, augmented and normalised on tensors by :class:`BatchLoader`. That keeps the per-step overhead small,
which matters here: the paper's point is batch size 2 and 8, where a ``DataLoader`` with per-sample transforms
costs more than the network on a CPU.

CIFAR is read from the standard *python pickle* layout that https://www.cs.toronto.edu/~kriz/cifar.html ships
(``cifar-10-batches-py/data_batch_1..5, test_batch`` and ``cifar-100-python/train, test``) by a restricted
unpickler (:func:`read_cifar_batch`) that builds only the dicts, lists, bytes, numbers and uint8 arrays the format
holds: a pickle that asks for any other function or class (the way a pickle runs code) is refused unread.
Nothing is ever downloaded: a missing folder raises :class:`DatasetNotFoundError` with the path that was looked at.

``synthetic`` is a procedurally generated 10-class set (shapes and textures on noisy backgrounds, 16x16 by
default): deterministic for a given seed, made in about a second, hard enough that a small CNN does not reach
100% in a few epochs. It lets the batch-size sweep run on a laptop CPU; it is *not* a substitute for CIFAR when
judging the paper's numbers.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "ImageSet",
    "BatchLoader",
    "load_cifar",
    "read_cifar_batch",
    "make_synthetic_shapes",
    "load_dataset",
    "SYNTHETIC_CLASSES",
]

#: Per-channel mean/std of the CIFAR-10 training set (the usual normalisation constants).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

SYNTHETIC_CLASSES = (
    "disk", "ring", "square", "square_outline", "triangle", "plus", "x_cross", "h_stripes", "v_stripes", "checker",
)


class DatasetError(ValueError):
    """A dataset file exists but cannot be used; the message names the file and what to do."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset folder (or one of its files) is not on disk; the message says what was expected."""


@dataclass
class ImageSet:
    """Images ``(N, H, W, 3)`` uint8 and labels ``(N,)`` int64, with the class count and a name for reports."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    mean: tuple[float, ...] | None = None  # per-channel normalisation (of images / 255); None: CIFAR's
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be uint8 (N, H, W, 3), got {self.images.dtype} "
                             f"{self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None) -> "ImageSet":
        """The first ``n`` samples (all if ``n`` is None): for quick runs on a slice of CIFAR. ``n`` < 1 is a
        ValueError (a run on no data would publish chance-level numbers)."""
        if n is not None and n < 1:
            raise ValueError(f"{self.name}: a subset needs at least one sample, got {n}")
        if n is None or n >= len(self):
            return self
        return ImageSet(self.images[:n], self.labels[:n], self.num_classes, self.name, self.mean, self.std)


# --------------------------------------------------------------------------------------------------- CIFAR

_CIFAR_LAYOUT = {
    # name: (sub-folder, train files, test file, label key, classes)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", 100),
}


class _Refused(pickle.UnpicklingError):
    """The pickle asked for a global that a CIFAR batch never holds."""


def _checked_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _Refused("numpy.dtype of Python objects")
    return dtype


def _checked_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise _Refused(f"numpy _reconstruct of {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, _checked_dtype(dtype))


def _checked_frombuffer(buffer, dtype, shape, order):
    return np.frombuffer(buffer, dtype=_checked_dtype(dtype)).reshape(shape, order=order)


def _checked_encode(text, encoding="utf-8"):  # how Python 3 pickles bytes in protocols 0-2
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode other than latin-1 text")
    return text.encode("latin-1")


#: Every global a CIFAR python-pickle batch refers to (numpy 1 and 2 spell the module differently), each a
#: checked stand-in: a dict of bytes, lists, ints and uint8 arrays is all the format holds.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _checked_dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _checked_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _checked_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): lambda: _checked_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): lambda: _checked_frombuffer,
    ("_codecs", "encode"): lambda: _checked_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR format holds: any other global (a function, a class: the way a pickle runs
    code) is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        factory = _CIFAR_GLOBALS.get((module, name))
        if factory is None:
            raise _Refused(f"{module}.{name}")
        return factory()


def read_cifar_batch(path: str | Path) -> dict:
    """One CIFAR python-pickle batch as a dict, without running anything the file asks for: the unpickler
    allows only the arrays, lists, bytes and numbers the format holds (:data:`_CIFAR_GLOBALS`). A file that asks
    for anything else raises :class:`DatasetError` in one sentence; so does a file that is not a pickle."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            entry = _CifarUnpickler(handle, encoding="bytes").load()
        except _Refused as exc:
            raise DatasetError(f"{path} is not a CIFAR batch: it asks to run or build {exc}, which the CIFAR format "
                               f"never does (a tampered or foreign pickle), so it was not loaded; re-extract the "
                               f"python version from https://www.cs.toronto.edu/~kriz/cifar.html") from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise DatasetError(f"{path} is not a CIFAR python-pickle batch ({type(exc).__name__}: {exc}); "
                               f"re-extract the python version of the archive") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{path} is not a CIFAR python-pickle batch (it holds a {type(entry).__name__}, not a "
                           f"dict); re-extract the python version of the archive")
    return entry


def _cifar_folder(root: Path, name: str) -> Path:
    sub = _CIFAR_LAYOUT[name][0]
    for candidate in (root / sub, root):
        if candidate.name == sub and candidate.is_dir():
            return candidate
    return root / sub


def load_cifar(root: str | Path, name: str = "cifar10", split: str = "train") -> ImageSet:
    """Read CIFAR-10/100 from the python-pickle layout under ``root`` (never downloads).

    ``root`` may be the folder that *contains* ``cifar-10-batches-py`` / ``cifar-100-python`` or that folder
    itself. ``split`` is ``"train"`` (50,000 images) or ``"test"`` (10,000). CIFAR-100 uses the 100 fine labels.
    """
    if name not in _CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR variant {name!r}: use 'cifar10' or 'cifar100'")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    sub, train_files, test_file, label_key, num_classes = _CIFAR_LAYOUT[name]
    folder = _cifar_folder(Path(root), name)
    files = train_files if split == "train" else [test_file]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        pretty = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
        raise DatasetNotFoundError(
            f"{pretty} not found: expected {folder}/{{{','.join(train_files + [test_file])}}} (missing: "
            f"{', '.join(missing)}); unpack the python version from https://www.cs.toronto.edu/~kriz/cifar.html "
            f"under --data_dir (this script never downloads), or run with --dataset synthetic for the built-in "
            f"offline set")
    images, labels = [], []
    for f in files:
        entry = read_cifar_batch(folder / f)
        if b"data" not in entry or label_key not in entry:
            raise DatasetError(f"{folder / f} has no {b'data'!r}/{label_key!r} entries: is it the python version of "
                               f"{name}?")
        data, batch_labels = entry[b"data"], entry[label_key]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3072 and isinstance(batch_labels, list) and len(batch_labels) == len(data)
                and all(type(v) is int and 0 <= v < num_classes for v in batch_labels)):
            raise DatasetError(f"{folder / f} does not hold CIFAR images (uint8 rows of 3072 values) and as many "
                               f"labels in 0..{num_classes - 1}: re-extract the python version of the archive")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), num_classes,
                    f"{name}-{split}")


# ----------------------------------------------------------------------------------------------- synthetic

def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray, r: float, period: float) -> np.ndarray:
    """Boolean mask of class ``cls`` in the (rotated, centred) coordinates ``u, v``; ``r`` is the size."""
    rho = np.sqrt(u * u + v * v)
    box = np.maximum(np.abs(u), np.abs(v))
    if cls == 0:  # disk
        return rho <= r
    if cls == 1:  # ring
        return (rho <= r) & (rho >= 0.55 * r)
    if cls == 2:  # filled square
        return box <= 0.8 * r
    if cls == 3:  # square outline
        return (box <= 0.85 * r) & (box >= 0.5 * r)
    if cls == 4:  # triangle, apex at v = -r, base at v = 0.7 r
        return (v >= -r) & (v <= 0.7 * r) & (np.abs(u) <= 0.85 * (v + r) / 1.7)
    if cls in (5, 6):  # plus / diagonal cross (the x-cross is the plus turned by 45 degrees)
        if cls == 6:
            u, v = (u - v) / math.sqrt(2), (u + v) / math.sqrt(2)
        arm = 0.3 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    patch = box <= 1.05 * r
    if cls == 7:  # horizontal stripes
        return patch & (np.sin(2 * math.pi * v / period) > 0)
    if cls == 8:  # vertical stripes
        return patch & (np.sin(2 * math.pi * u / period) > 0)
    if cls == 9:  # checkerboard
        return patch & (np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * v / period) > 0)
    raise ValueError(f"synthetic class {cls} does not exist (0..9)")


def make_synthetic_shapes(n: int, seed: int = 0, size: int = 16, noise: float = 0.08,
                          clutter: int = 2) -> ImageSet:
    """``n`` procedurally generated images of :data:`SYNTHETIC_CLASSES`, balanced, fully determined by ``seed``.

    Each image: a random background colour with a linear gradient, one shape or texture of the class at a random
    place, size, colour and contrast (shapes without a natural orientation are rotated freely, the stripe/cross
    classes only by +-20 degrees so they stay distinguishable), ``clutter`` small distractor blobs, and Gaussian
    pixel noise of standard deviation ``noise`` (in [0, 1] units). Low-contrast draws make some samples
    genuinely ambiguous, so accuracy saturates below 100% and optimizers can be told apart.
    """
    if n <= 0:
        raise ValueError(f"the synthetic set needs at least one image, got n={n}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(SYNTHETIC_CLASSES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    free_rotation = {0, 1, 2, 3, 4}
    for i, cls in enumerate(labels):
        bg = rng.uniform(0.15, 0.85, 3)
        grad = rng.normal(0, 0.15, (2, 3)) / size
        img = bg + (yy[..., None] - size / 2) * grad[0] + (xx[..., None] - size / 2) * grad[1]
        for _ in range(clutter):  # distractor blobs
            cy, cx = rng.uniform(0, size, 2)
            rad = rng.uniform(0.8, 2.0)
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= rad ** 2
            img[blob] = rng.uniform(0, 1, 3)
        r = rng.uniform(0.22, 0.38) * size
        cy, cx = rng.uniform(r * 0.7, size - r * 0.7, 2)
        theta = rng.uniform(0, 2 * math.pi) if cls in free_rotation else rng.uniform(-0.35, 0.35)
        dy, dx = yy - cy, xx - cx
        u = math.cos(theta) * dx + math.sin(theta) * dy
        v = -math.sin(theta) * dx + math.cos(theta) * dy
        mask = _shape_mask(int(cls), u, v, r, period=rng.uniform(2.6, 4.0))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-8
        fg = np.clip(bg + rng.uniform(0.2, 0.7) * direction * math.sqrt(3) * rng.choice([-1, 1]), 0, 1)
        img[mask] = fg
        img = img + rng.normal(0, noise, img.shape)
        images[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return ImageSet(images, labels, len(SYNTHETIC_CLASSES), f"synthetic{size}-seed{seed}")


# -------------------------------------------------------------------------------------------------- digits

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes; in its wheel, nothing is downloaded), split
    once and for all: stratified, 30% test (540 images), ``random_state=0``. Returns
    ``(x_train, y_train, x_test, y_test)`` with pixel values scaled to [0, 1] (the originals are 0..16)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DatasetNotFoundError("--dataset digits needs scikit-learn (it ships the data set): "
                                   "pip install scikit-learn, or pip install -e .[experiments]") from None
    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, stratify=y,
                                                        random_state=DIGITS_SPLIT_SEED)
    return x_train, y_train, x_test, y_test


def load_digits_sets() -> tuple[ImageSet, ImageSet]:
    """The digits split as ImageSets (grey replicated to 3 channels), normalised by the train set's mean and
    standard deviation (the usual per-channel normalisation, as CIFAR's)."""
    x_train, y_train, x_test, y_test = load_digits_split()
    mean, std = float(x_train.mean()), float(x_train.std())

    def as_set(x: np.ndarray, y: np.ndarray, split: str) -> ImageSet:
        images = np.repeat(np.rint(x * 255).astype(np.uint8)[..., None], 3, axis=-1)
        return ImageSet(images, y, 10, f"digits-{split}", (mean,) * 3, (std,) * 3)

    return as_set(x_train, y_train, "train"), as_set(x_test, y_test, "test")


def load_dataset(name: str, data_dir: str | Path | None = None, *, synthetic_train: int = 4000,
                 synthetic_test: int = 2000, synthetic_size: int = 16, data_seed: int = 0
                 ) -> tuple[ImageSet, ImageSet]:
    """``(train, test)`` for ``cifar10``, ``cifar100`` (from ``data_dir``) or ``synthetic`` (made in memory).

    The synthetic test set uses a different generator seed from the training set, so it holds unseen draws.
    """
    if name in _CIFAR_LAYOUT:
        if data_dir is None:
            raise DatasetNotFoundError(f"--dataset {name} needs --data_dir, the folder holding "
                                       f"{_CIFAR_LAYOUT[name][0]}/ (this script never downloads)")
        return load_cifar(data_dir, name, "train"), load_cifar(data_dir, name, "test")
    if name == "synthetic":
        return (make_synthetic_shapes(synthetic_train, seed=2 * data_seed, size=synthetic_size),
                make_synthetic_shapes(synthetic_test, seed=2 * data_seed + 1, size=synthetic_size))
    if name == "digits":
        return load_digits_sets()
    raise ValueError(f"unknown dataset {name!r}: use cifar10, cifar100, synthetic or digits")


# ----------------------------------------------------------------------------------------------- batching

class BatchLoader:
    """Shuffled mini-batches as normalised float tensors, with optional CIFAR augmentation.

    The order and the augmentation of epoch ``e`` depend only on ``(seed, e)``, so two optimizers run with the
    same seed see exactly the same batches: the comparison is paired. ``augment`` is the standard CIFAR recipe
    (4-pixel zero-padded random crop and horizontal flip). The last incomplete batch is kept (``drop_last``
    False), as torchvision's CIFAR loaders do in the usual training scripts.
    """

    def __init__(self, data: ImageSet, batch_size: int, *, shuffle: bool = True, augment: bool = False,
                 seed: int = 0, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 device: str | torch.device = "cpu", drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.labels = torch.from_numpy(data.labels).to(self.device)
        images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float().div_(255)
        mean = mean or data.mean or CIFAR_MEAN  # the data set's own normalisation, else CIFAR's
        std = std or data.std or CIFAR_STD
        m = torch.tensor(mean).view(1, 3, 1, 1)
        s = torch.tensor(std).view(1, 3, 1, 1)
        self.images = ((images - m) / s).contiguous().to(self.device)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        n = len(self.labels)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.augment:
            h, w = self.images.shape[-2:]
            shifts = torch.randint(0, 9, (n, 2), generator=gen)
            flips = torch.rand(n, generator=gen) < 0.5
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.images[idx.to(self.device)]
            if self.augment:
                padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
                out = torch.empty_like(x)
                for j, k in enumerate(idx.tolist()):
                    dy, dx = shifts[k].tolist()
                    crop = padded[j, :, dy:dy + h, dx:dx + w]
                    out[j] = crop.flip(-1) if flips[k] else crop
                x = out
            yield x, self.labels[idx.to(self.device)]
