"""Loading a generator checkpoint (ours or the official pix2pix's) and matching it to the network options.

Where the network options come from, in order (:func:`network_options`):

1. ``checkpoints/NAME/train_opt.json``, written by our train.py;
2. ``checkpoints/NAME/train_opt.txt``, the official pix2pix's (and our) human-readable table
   ``----------------- Options --------------- / name: value [default: d] / ----------------- End ---``;
   the official repository's older names (``which_direction``, ``which_model_netG``, ``loadSize``, ``fineSize``,
   ``resize_or_crop``) are read too;
3. the command line alone (a folder holding only ``latest_net_G.pth``, as the official pretrained models come):
   then ``--direction`` must be given, because a silent default would synthesize the wrong way round.

Flags given on the command line always win over the file. When the checkpoint's keys or shapes disagree with
the options, :func:`diagnose_mismatch` (:mod:`pix2pix_tr.models.checkpoint`, shared with train.py) reads the
architecture off the state dict itself (the first and last convolutions, the U-Net depth, the ResNet blocks,
batch-norm statistics) and names the flags to change.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

# Checkpoint matching lives in pix2pix_tr.models.checkpoint (train.py uses it too); re-exported here under the
# names this module always had.
from pix2pix_tr.models.checkpoint import CheckpointError, diagnose_mismatch, generator_options
from pix2pix_tr.models.checkpoint import load_state_dict as _load_state_dict
from pix2pix_tr.models.checkpoint import state_fits as _fits
from pix2pix_tr.models.checkpoint import state_shapes as _shapes

__all__ = ["InferenceError", "CheckpointMismatchError", "generator_options", "checkpoint_path", "load_state_dict",
           "build_generator", "diagnose_mismatch", "read_options_txt", "network_options"]

#: What older official pix2pix versions called today's options.
_LEGACY_NAMES = {"which_direction": "direction", "which_model_netG": "netG", "loadSize": "load_size",
                 "fineSize": "crop_size", "resize_or_crop": "preprocess", "which_epoch": "epoch"}
#: The network flags test.py can take from the command line when the folder has no options file.
NETWORK_FLAGS = ("--netG", "--ngf", "--norm", "--no_dropout", "--input_nc", "--output_nc", "--direction")


class InferenceError(Exception):
    """A user-facing problem with test.py's input; the message is one sentence saying what to do."""


class CheckpointMismatchError(InferenceError):
    """The checkpoint's state_dict does not fit the generator built from the options."""


# ------------------------------------------------------------------------------------------------ options
def _txt_value(text: str) -> Any:
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_options_txt(path: str | os.PathLike) -> dict[str, Any]:
    """The options in a ``train_opt.txt`` (the official pix2pix's format, which our train.py writes too).

    One ``name: value`` per line between the ``Options`` and ``End`` rulers, each optionally followed by
    ``[default: d]``; values become bool/int/float/None where they read as such. Raises InferenceError naming
    the file when no option line is found."""
    options: dict[str, Any] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s?(.*?)\s*(\[default: .*\])?\s*$", line)
        if match is None or line.lstrip().startswith("-"):
            continue
        key, value = match.group(1), _txt_value(match.group(2))
        options[_LEGACY_NAMES.get(key, key)] = value
    if not options:
        raise InferenceError(f"{path} holds no 'name: value' option lines; restore the train_opt.txt the training "
                             f"wrote, or remove it and pass the network options ({' '.join(NETWORK_FLAGS)}) to "
                             f"test.py")
    return options


def network_options(checkpoint_dir: Path, opt: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The training options of a run and where they came from (see the module docstring).

    Returns ``(options, source)``; ``source`` is a phrase for the "network options from ..." line."""
    from pix2pix_tr.options import load_train_options

    json_path, txt_path = checkpoint_dir / "train_opt.json", checkpoint_dir / "train_opt.txt"
    if json_path.is_file():
        try:
            return load_train_options(checkpoint_dir), str(json_path)
        except ValueError as exc:
            raise InferenceError(f"{json_path} is not valid JSON ({exc}): restore it, or delete it so that "
                                 f"train_opt.txt or the command line gives the network options") from exc
    if txt_path.is_file():
        return read_options_txt(txt_path), f"{txt_path} (the official pix2pix's format)"
    if not checkpoint_dir.is_dir():
        raise InferenceError(f"no experiment folder {checkpoint_dir}: check --name and --checkpoints_dir")
    if getattr(opt, "direction", None) is None:
        raise InferenceError(
            f"{checkpoint_dir} has neither train_opt.json (ours) nor train_opt.txt (the official pix2pix's), so the "
            f"network options must come from the command line: pass at least --direction AtoB or BtoA, plus any of "
            f"--netG --ngf --norm --no_dropout that differ from pix2pix's defaults (unet_256, 64, batch, dropout)")
    return {}, "the command line (no train_opt.json or train_opt.txt; unset options take pix2pix's defaults)"


# ------------------------------------------------------------------------------------------------ the checkpoint
def checkpoint_path(checkpoint_dir: str | os.PathLike, epoch: str | int) -> Path:
    """``checkpoint_dir/{epoch}_net_G.pth``; a InferenceError listing the saved epochs if it is missing."""
    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_dir / f"{epoch}_net_G.pth"
    if not path.is_file():
        if not checkpoint_dir.is_dir():
            raise InferenceError(f"no experiment folder {checkpoint_dir}: check --name and --checkpoints_dir")
        saved = sorted((p.name[: -len("_net_G.pth")] for p in checkpoint_dir.glob("*_net_G.pth")),
                       key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))
        hint = f"saved epochs: {', '.join(saved)}" if saved else "no *_net_G.pth there at all"
        raise InferenceError(f"checkpoint {path} not found ({hint}): pick one with --epoch")
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """:func:`pix2pix_tr.models.checkpoint.load_state_dict`, with its error as an InferenceError."""
    try:
        return _load_state_dict(path)
    except CheckpointError as exc:
        raise InferenceError(str(exc)) from exc


def build_generator(gen: Mapping[str, Any], state: Mapping[str, torch.Tensor], *,
                    source: str = "the checkpoint", options_source: str = "") -> nn.Module:
    """``define_G(**gen)`` with ``state`` loaded (strictly); CheckpointMismatchError explaining a misfit."""
    from pix2pix_tr.models import define_G

    try:
        net = define_G(**gen, init_type="normal", init_gain=0.02)
    except ValueError as exc:
        raise InferenceError(f"cannot build the generator: {exc}") from exc
    if not _fits(_shapes(state), _shapes(net)):
        raise CheckpointMismatchError(f"{source} does not fit: {diagnose_mismatch(state, gen, source=options_source)}")
    net.load_state_dict(state, strict=True)
    return net
