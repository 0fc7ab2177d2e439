"""``--continue_train`` on a folder that holds network weights but no training state.

The official pix2pix saves only ``{epoch}_net_G.pth`` / ``{epoch}_net_D.pth`` (plain state dicts) beside its
``train_opt.txt``, ``loss_log.txt`` and ``web/``; there is no optimiser state to resume. train.py then starts a
*new* run (epoch 1, fresh optimisers, fresh schedule) from ``latest_net_G.pth`` and ``latest_net_D.pth``:

1. :func:`keep_pretrained` moves everything the folder held into ``NAME/pretrained/`` (a rename: nothing is
   copied, nothing is overwritten by the new run's files of the same names);
2. :func:`load_pretrained` loads the two state dicts strictly (a missing ``num_batches_tracked`` is allowed, as
   ``load_state_dict`` itself allows) and returns the note train.py prints. A checkpoint that does not fit
   the network options is one sentence naming the flags to change, read off the checkpoint's keys and shapes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch.nn as nn

from ..models.checkpoint import (CheckpointError, diagnose_mismatch, generator_options, load_state_dict,
                                 state_fits, state_shapes)
from ..safe_load import NonFiniteStateError
from .checkpoint import STATE_FILE
from .errors import TrainingError

PRETRAINED_DIR = "pretrained"


def _weights(folder: Path, which: str) -> Path:
    return folder / f"latest_net_{which}.pth"


def is_pretrained_folder(run_dir: Path) -> bool:
    """True when ``--continue_train`` must start from weights alone: no training state, but ``latest_net_G.pth``
    in the folder (or already moved to ``pretrained/`` by an earlier start that saved no state yet)."""
    run_dir = Path(run_dir)
    if (run_dir / STATE_FILE).exists():
        return False
    return _weights(run_dir, "G").is_file() or _weights(run_dir / PRETRAINED_DIR, "G").is_file()


def weights_folder(run_dir: Path) -> Path:
    """Where the weights a ``--continue_train`` without a training state starts from are: the run folder, or its
    ``pretrained/`` once an earlier start moved them there."""
    run_dir = Path(run_dir)
    return run_dir if _weights(run_dir, "G").is_file() else run_dir / PRETRAINED_DIR


#: the options a start from weights compares with the weights' own options file (the networks' shapes are checked
#: against the weights themselves; the optimiser and the schedule start fresh)
MEANING_OPTIONS = ("direction", "preprocess", "load_size", "crop_size", "no_dropout")


def weights_options(folder: Path) -> dict[str, Any]:
    """The options saved beside weights: our ``train_opt.json``, else the ``name: value`` lines of a
    ``train_opt.txt`` (the official pix2pix's table, which our train.py writes too), else nothing."""
    folder = Path(folder)
    json_path, txt_path = folder / "train_opt.json", folder / "train_opt.txt"
    try:
        if json_path.is_file():
            data = json.loads(json_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        if txt_path.is_file():
            options = {}
            for line in txt_path.read_text(encoding="utf-8", errors="replace").splitlines():
                found = re.match(r"^\s*(\w+):\s*(\S+)", line)
                if found:
                    options[found.group(1)] = _option_value(found.group(2))
            return options
    except (OSError, ValueError):
        pass  # an unreadable options file: the weights' shapes are still checked
    return {}


def _option_value(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def keep_pretrained(run_dir: Path) -> str:
    """Move the folder's previous content into ``run_dir/pretrained/``; returns a sentence saying so."""
    run_dir = Path(run_dir)
    dest = run_dir / PRETRAINED_DIR
    if not _weights(run_dir, "G").is_file():
        return f"starting from the weights kept in {dest}"
    if dest.exists():
        raise TrainingError(f"{run_dir} holds network weights to start from, but {dest} exists already; move it "
                            f"away (or the weights into it) and rerun with --continue_train")
    dest.mkdir()
    for item in sorted(run_dir.iterdir()):
        if item.name != PRETRAINED_DIR and not item.name.startswith("."):  # the run's lock file stays
            item.rename(dest / item.name)
    return f"moved what {run_dir} held (weights, options, logs, web page) into {dest}, so the new run overwrites " \
           f"none of it"


def _load(net: nn.Module, path: Path, which: str, options: Mapping[str, Any]) -> None:
    try:
        state = load_state_dict(path)
    except (CheckpointError, NonFiniteStateError) as exc:  # one sentence naming the file
        raise TrainingError(f"--continue_train: {exc}") from exc
    if not state_fits(state_shapes(state), state_shapes(net)):
        if which == "G":
            detail = diagnose_mismatch(state, generator_options(options), tool="train.py")
        else:
            detail = "check --netD, --ndf, --n_layers_D, --norm and --input_nc/--output_nc against the run that " \
                     "saved it"
        raise TrainingError(f"--continue_train: {path} does not fit the {which} built from the options: {detail}")
    net.load_state_dict(state, strict=True)


def load_pretrained(run_dir: Path, G: nn.Module, D: nn.Module, options: Mapping[str, Any]) -> str:
    """Load ``pretrained/latest_net_G.pth`` (and ``_D`` when present) into ``G`` and ``D``, built with the network
    ``options`` (a dict of train.py's options); returns the note."""
    folder = Path(run_dir) / PRETRAINED_DIR
    _load(G, _weights(folder, "G"), "G", options)
    d_path = _weights(folder, "D")
    if d_path.is_file():
        _load(D, d_path, "D", options)
        loaded = "G and D"
    else:
        loaded = "G (no latest_net_D.pth there: D starts from its random initialisation)"
    return (f"note: --continue_train found weights but no training state in {folder}: a new run starts from "
            f"those weights ({loaded}); the optimiser state (TR anchors, Adam moments), the learning-rate schedule "
            f"and the epoch count start fresh")
