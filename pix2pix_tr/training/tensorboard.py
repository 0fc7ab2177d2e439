"""Optional TensorBoard logging of a training run (``train.py --tensorboard``).

Writes to ``checkpoints/NAME/tb/``: the rows of the loss log as scalars (``loss/G_GAN``, ``loss/G_L1``,
``loss/D_real``, ``loss/D_fake``, ``loss/D_gp`` with wgangp; ``lr/G``, ``lr/D``), stepped by the total iteration
count, and the gallery images of each saved epoch (``gallery/real_A``, ``gallery/fake_B``, ``gallery/real_B``).
The CSV log, the loss plot and the web page are written as without it. View with
``tensorboard --logdir checkpoints``. Needs the ``tensorboard`` package: ``pip install 'pix2pix-tr[tensorboard]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import torch

INSTALL_HINT = "pip install 'pix2pix-tr[tensorboard]'"


def tensorboard_problem() -> str | None:
    """Why ``--tensorboard`` cannot work here (one sentence), or None."""
    if importlib.util.find_spec("tensorboard") is None:
        return f"--tensorboard needs the tensorboard package, which is not installed: {INSTALL_HINT}"
    return None


class TensorBoardLog:
    """A ``SummaryWriter`` on ``run_dir/tb`` fed by the loop's two observers (log rows, gallery epochs)."""

    def __init__(self, run_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # the package is missing or too old for torch
            raise ImportError(f"--tensorboard: {exc}; {INSTALL_HINT}") from exc
        self.log_dir = Path(run_dir) / "tb"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def add_row(self, row: Mapping[str, Any]) -> None:
        """One loss-log row: every loss column as ``loss/NAME``, the learning rates as ``lr/G`` and ``lr/D``."""
        step = int(row["total_iters"])
        for key, value in row.items():
            if key in ("epoch", "epoch_iter", "total_iters", "time") or not isinstance(value, (int, float)):
                continue  # positions, and text columns such as the resume note
            tag = f"lr/{key[3:]}" if key.startswith("lr_") else f"loss/{key}"
            self.writer.add_scalar(tag, float(value), step)

    def add_visuals(self, epoch: int, step: int, visuals: Mapping[str, torch.Tensor]) -> None:
        """The gallery row of an epoch: each (N, C, H, W) image in [-1, 1] as ``gallery/NAME``."""
        for name, images in visuals.items():
            pictures = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
            if pictures.shape[1] == 1:
                pictures = pictures.expand(-1, 3, -1, -1)
            self.writer.add_images(f"gallery/{name}", pictures[:, :3], step)
        self.writer.add_scalar("epoch", epoch, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
