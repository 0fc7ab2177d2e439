"""``--cache_images``: every A|B file decoded and resized once into one shared-memory buffer that loader workers read.

Decoding a 512x256 PNG and the bicubic resize of its halves (256 -> 286 in pix2pix's default jitter) are most of
the loader's work: 7.7 ms per sample in all, against 0.7 ms left for the random crop, the flip and the conversion to
float once they are cached (``benchmarks/data_path.py``, one thread), and pix2pix reads every file once per epoch
(200 epochs in the paper). Both are deterministic: the resize depends only on the
image size and the flags, never on the random draw. :class:`DecodedImageCache` therefore runs them once per file,
in the main process, and keeps the results (the two halves, resized) in a single ``uint8`` tensor in shared memory
(``Tensor.share_memory_``). Worker processes receive it through torch's shared-memory pickling (with ``fork`` they
simply inherit it), so N workers hold one copy, not N. The pixels a worker reads are exactly those the uncached path
computes, so training batches are bit-identical with and without the cache.

Memory: the resized halves' width x height x channels bytes per file (2,975 Cityscapes pairs under
``resize_and_crop`` 286: 2 x 286 x 286 x 3 bytes each, 1.46 GB); train.py reports the size. The buffer lives in
``/dev/shm``, which containers often keep small (Docker: 64 MB unless ``--shm-size``): the free space there is
checked before anything is decoded, and a failing allocation is reported in one sentence instead of a traceback.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from pix2pix_tr.data.errors import DatasetError

SHM_DIR = "/dev/shm"


def shm_free_bytes() -> int | None:
    """Free bytes in the shared-memory file system (None where there is none to ask, e.g. not Linux)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _too_small(need: int, free: int | None, what: str) -> DatasetError:
    have = f"only {free / 2**20:.0f} MB are free there" if free is not None else "it could not provide them"
    return DatasetError(f"--cache_images needs {what}{need / 2**20:.0f} MB of shared memory ({SHM_DIR}) for the "
                        f"decoded images, but {have}: give the machine or container more (e.g. docker run "
                        "--shm-size=4g), use fewer files (--max_dataset_size), or train without --cache_images")


class DecodedImageCache:
    """The images ``prepare(key)`` returns for each of ``keys`` (a sequence of PIL images, RGB or L), by position."""

    def __init__(self, keys: Iterable, prepare: Callable[[Any], Sequence[Image.Image]], *,
                 expected_nbytes: int | None = None):
        if expected_nbytes is not None:  # before minutes of decoding, not after
            free = shm_free_bytes()
            if free is not None and free < expected_nbytes:
                raise _too_small(expected_nbytes, free, "about ")
        shapes, arrays = [], []
        for key in keys:
            row = []
            for img in prepare(key):
                arr = np.asarray(img, dtype=np.uint8)
                row.append(arr if arr.ndim == 3 else arr[:, :, None])
            shapes.append([a.shape for a in row])
            arrays.append(row)
        sizes = [sum(a.size for a in row) for row in arrays]
        self.shapes = shapes
        self.offsets = np.cumsum([0] + sizes).tolist()
        buf = torch.empty(self.offsets[-1], dtype=torch.uint8)
        flat = buf.numpy()
        for row, start in zip(arrays, self.offsets):
            for a in row:
                flat[start:start + a.size] = a.reshape(-1)
                start += a.size
        try:
            self.buffer = buf.share_memory_()
        except RuntimeError as exc:  # torch: "unable to allocate shared memory(shm) ...: No space left on device"
            if "shared memory" not in str(exc) and "shm" not in str(exc):
                raise
            raise _too_small(self.offsets[-1], shm_free_bytes(), "") from None

    @property
    def nbytes(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.shapes)

    def tensors(self, index: int) -> list[torch.Tensor]:
        """The cached images of file ``index`` as ``(h, w, c)`` uint8 views of the shared buffer (do not modify:
        slice, flip or copy them)."""
        out, start = [], self.offsets[index]
        for h, w, c in self.shapes[index]:
            out.append(self.buffer[start:start + h * w * c].view(h, w, c))
            start += h * w * c
        return out
