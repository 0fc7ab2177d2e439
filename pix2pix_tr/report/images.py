"""Tensor <-> image conversion for galleries and test outputs.

pix2pix networks work on images scaled to [-1, 1] (the generator ends in ``tanh``). Everything that is written
to disk goes through :func:`tensor_to_image`, so a saved PNG is exactly ``round((t + 1) / 2 * 255)`` of the
network's output, clipped to [0, 255]. Tests rely on that formula to compare saved pixels with the model.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

from pix2pix_tr.io import atomic_save_image

ImageLike = Union[torch.Tensor, np.ndarray]

__all__ = ["tensor_to_image", "save_image", "ImageLike"]


def tensor_to_image(t: ImageLike) -> np.ndarray:
    """Turn a [-1, 1] image tensor into an ``(H, W, 3)`` uint8 array.

    Accepts ``C x H x W`` or ``1 x C x H x W`` tensors (any float dtype, any device, with or without grad).
    One channel is repeated to RGB; more than three channels keep the first three (as the original pix2pix
    ``tensor2im`` does). A numpy array is taken as already being an image: ``(H, W)``, ``(H, W, 1)`` or
    ``(H, W, 3)`` uint8 passes through (converted to 3 channels); other dtypes are treated like a tensor in
    [-1, 1] in ``H x W x C`` layout.
    """
    if isinstance(t, np.ndarray):
        arr = t
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"tensor_to_image: expected an (H, W[, C]) array, got shape {t.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint((arr.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return _to_rgb(arr, t.shape)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensor_to_image: expected a torch.Tensor or numpy array, got {type(t).__name__}")
    x = t.detach()
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(
                f"tensor_to_image: got a batch of {x.shape[0]} images; pass one image (index the batch first)")
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"tensor_to_image: expected a C x H x W tensor, got shape {tuple(t.shape)}")
    x = x.float().cpu()
    x = ((x + 1.0) * 127.5).round().clamp_(0, 255).to(torch.uint8)
    return _to_rgb(x.permute(1, 2, 0).numpy(), tuple(t.shape))


def _to_rgb(arr: np.ndarray, shape) -> np.ndarray:
    c = arr.shape[2]
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c >= 3:
        arr = arr[:, :, :3]
    else:
        raise ValueError(f"tensor_to_image: cannot show {c} channels as an image (shape {shape})")
    return np.ascontiguousarray(arr)


def save_image(t: ImageLike, path: str | os.PathLike) -> np.ndarray:
    """Convert with :func:`tensor_to_image` and save atomically (format from the extension); returns the array."""
    img = tensor_to_image(t)
    atomic_save_image(img, path)
    return img
