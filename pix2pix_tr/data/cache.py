"""``--cache_images``: every A|B file decoded once into one shared-memory buffer that DataLoader workers read.

Decoding a 512x256 PNG costs the loader more than the crop and flip that follow, and pix2pix reads every file
once per epoch (200 epochs in the paper). :class:`DecodedImageCache` decodes each file once, in the main process,
into a single ``uint8`` tensor in shared memory (``Tensor.share_memory_``). Worker processes receive it through
torch's shared-memory pickling (with ``fork`` they simply inherit it), so N workers hold one copy, not N. The
pixels a worker reads are exactly those :func:`~pix2pix_tr.data.aligned.open_image` returns, so training
batches are bit-identical with and without the cache. Memory: width x height x 3 bytes per file (2,975 Cityscapes
pairs at 512x256: 1.17 GB); the size is reported when the cache is built.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image


class DecodedImageCache:
    """The decoded pixels of ``paths`` (``decode(path) -> PIL image``, RGB or L), addressable by index."""

    def __init__(self, paths: Sequence[os.PathLike], decode: Callable[[os.PathLike], Image.Image]):
        arrays = []
        for path in paths:
            arr = np.asarray(decode(path), dtype=np.uint8)
            arrays.append(arr if arr.ndim == 3 else arr[:, :, None])
        self.shapes = [a.shape for a in arrays]
        self.offsets = np.cumsum([0] + [a.size for a in arrays]).tolist()
        buf = torch.empty(self.offsets[-1], dtype=torch.uint8)
        flat = buf.numpy()
        for a, start in zip(arrays, self.offsets):
            flat[start:start + a.size] = a.reshape(-1)
        self.buffer = buf.share_memory_()

    @property
    def nbytes(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.shapes)

    def image(self, index: int) -> Image.Image:
        """The decoded image ``index`` (a copy: callers may crop or modify it)."""
        h, w, c = self.shapes[index]
        arr = self.buffer[self.offsets[index]:self.offsets[index + 1]].numpy().reshape(h, w, c)
        return Image.fromarray(arr[:, :, 0].copy() if c == 1 else arr.copy(), "L" if c == 1 else "RGB")
