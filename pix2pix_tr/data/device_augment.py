"""``--augment_on_device``: pix2pix's random crop and flip, and the conversion to float, done on the training device.

With ``--cache_images`` the loader's remaining per-sample work is the crop, the flip and the uint8 -> float
conversion of both halves; on a GPU that is batch-1 bound, a loader that never lags is what keeps it busy. With
this flag the loader hands over the resized halves as ``uint8`` (a quarter of the bytes of float32, so the
host -> device copy shrinks too) with the sample's draw, and :func:`crop_flip` applies it on the device in one
gather per batch.

Exact: the crop and the flip only move pixels, and the conversion reads a 256-entry table computed on the CPU with
the very operations of :func:`pix2pix_tr.data.aligned.to_tensor` (``x.float() / 127.5 - 1``). Computing it on a GPU
instead would not do: torch's CUDA kernel divides a tensor by a CPU scalar by multiplying with its reciprocal (its
source says so: it "may lose one bit of precision"), where the CPU divides. So the batches equal the default path's bit for bit, on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor

_TABLES: dict = {}


def uint8_to_float_table(device) -> Tensor:
    """``table[v]`` = what ``to_tensor`` makes of the byte ``v``, on ``device`` (cached per device)."""
    device = torch.device(device)
    table = _TABLES.get(device)
    if table is None:
        table = torch.arange(256, dtype=torch.uint8).float().div_(127.5).sub_(1.0)
        table = _TABLES[device] = table.to(device)
    return table


def crop_flip(images: Tensor, crop: Tensor, flip: Tensor, size: tuple[int, int], *,
              memory_format=torch.contiguous_format) -> Tensor:
    """Crop, flip and convert a batch on its device.

    Args:
        images: ``(N, H, W, C)`` uint8, the resized halves (channels last, as the loader stacks them).
        crop: ``(N, 2)`` integer ``[x, y]``: the top-left corner of each sample's window (``[0, 0]`` when the
            mode does not crop).
        flip: ``(N,)`` bool: mirror that sample left-right (after cropping, as PIL's transpose of the crop).
        size: ``(h, w)`` of the window.

    Returns ``(N, C, h, w)`` float32 in [-1, 1] on ``images``' device, in ``memory_format``.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"crop_flip expects an (N, H, W, C) uint8 batch, got {tuple(images.shape)} {images.dtype}")
    n, height, width, _ = images.shape
    h, w = size
    x0, y0 = crop[:, 0].long(), crop[:, 1].long()
    if not (0 <= h <= height and 0 <= w <= width):
        raise ValueError(f"crop_flip: a {h}x{w} window does not fit {height}x{width} images")
    device = images.device
    rows = y0[:, None] + torch.arange(h, device=device)  # (N, h)
    cols = torch.arange(w, device=device)
    cols = x0[:, None] + torch.where(flip.to(torch.bool)[:, None], (w - 1) - cols, cols)  # (N, w)
    batch = torch.arange(n, device=device)[:, None, None]
    window = images[batch, rows[:, :, None], cols[:, None, :]]  # (N, h, w, C)
    out = uint8_to_float_table(device)[window.long()].permute(0, 3, 1, 2)  # (N, C, h, w), channels-last strides
    return out.contiguous(memory_format=memory_format)
