"""The training loop's reliability checks (docs/reliability.md), kept out of the loop so it stays readable.

* :func:`remove_orphan_tmp`: temporary files a killed save left in the run folder are removed at start.
* :func:`data_fingerprint` / :func:`check_resume_data`: the training state records the data set's size and a
  fingerprint (relative file names and sizes); a resume on other data is refused unless ``--override dataroot``.
* :data:`OVERRIDABLE` / :func:`apply_overrides`: ``--continue_train --override lr --lr X`` changes the learning
  rate of a saved run (optimisers, schedules and the TR reference lr rescaled by the same factor); which
  ``--override`` values a run accepts is checked by :class:`~pix2pix_tr.training.config.TrainConfig`.
* :func:`check_finite_networks`: weights *and* buffers must be finite (a loss can stay finite while the weights
  run off to inf); a non-finite network stops the run like a NaN loss, before anything is saved.
* :func:`no_space_message`: a full disk becomes one sentence with the space to free.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..io import TMP_GLOB, NoSpaceError
from ..safe_load import nonfinite_entries
from .errors import TrainingDiverged, TrainingError

#: options that ``--override`` may change on ``--continue_train``, and what changing them does
OVERRIDABLE = {
    "lr": "rescales the saved optimisers' and schedules' learning rates by new/old",
    "dataroot": "accepts a data set that differs from the one the run was trained on",
}


# ------------------------------------------------------------------------------------------------ files
def remove_orphan_tmp(run_dir: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files of interrupted atomic writes in ``run_dir`` and ``run_dir/web[/images]``.
    Call it only while holding the run folder's lock (no other writer can be mid-save)."""
    removed = []
    for folder in (run_dir, run_dir / "web", run_dir / "web" / "images"):
        for path in sorted(folder.glob(TMP_GLOB)) if folder.is_dir() else []:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (dicts/lists of tensors): about the size of its ``torch.save`` file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def no_space_message(exc: BaseException, run_dir: Path, needed_bytes: int | None, *, resumable: bool) -> str:
    """``no space left on DIR: free N MB and resume with --continue_train`` (or "run the same command again"
    when nothing had been saved yet)."""
    folder = exc.folder if isinstance(exc, NoSpaceError) else run_dir
    free = exc.free_bytes if isinstance(exc, NoSpaceError) else None
    have = "" if free is None else f"{free / 2**20:.1f} MB are free"
    if needed_bytes:
        mb = max(1, math.ceil(needed_bytes / 2**20))
        need, amount = f"a checkpoint needs about {mb} MB" + (f", {have}" if have else ""), f"{mb} MB"
    else:
        need, amount = have or "the disk is full", "space"
    then = ("resume with the same command plus --continue_train (the last complete checkpoint is kept)"
            if resumable else "run the same command again (no checkpoint had been saved yet)")
    return f"no space left on {folder} ({need}): free {amount} there and {then}"


# ------------------------------------------------------------------------------------------------ data
def data_fingerprint(root: Path, paths: Iterable[Path]) -> dict[str, Any]:
    """``{"size": n, "fingerprint": hex}`` of the files a run trains on: their names relative to ``root`` and
    their byte sizes (a stat per file, no reading), so moving the folder keeps it and changing the files does not."""
    digest = hashlib.blake2b(digest_size=8)
    n = 0
    for path in paths:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        digest.update(f"{Path(path).relative_to(root).as_posix()}\0{size}\n".encode())
        n += 1
    return {"size": n, "fingerprint": digest.hexdigest()}


def check_resume_data(saved: Mapping[str, Any] | None, current: Mapping[str, Any], run_dir: Path,
                      overrides: Iterable[str]) -> str | None:
    """Refuse a resume on other data (TrainingError) unless ``--override dataroot``; then return a note."""
    if not saved or saved.get("fingerprint") == current["fingerprint"]:
        return None
    what = (f"the run in {run_dir} was trained on {saved.get('size')} images of {saved.get('dataroot', '?')} "
            f"but --dataroot {current.get('dataroot', '?')} now gives {current['size']} images"
            + (" with other names or sizes" if saved.get("size") == current["size"] else ""))
    if "dataroot" in overrides:
        return f"note: --override dataroot: {what}; continuing on the new data"
    raise TrainingError(f"--continue_train: {what}; pass the original --dataroot (and --max_dataset_size), or add "
                        f"--override dataroot to continue on the new data")


# ------------------------------------------------------------------------------------------------ overrides
def apply_overrides(overrides: Iterable[str], saved_options: Mapping[str, Any], opt: Any,
                    optimizers: Iterable[torch.optim.Optimizer], schedulers: Iterable[Any]) -> list[str]:
    """Apply ``--override`` after the saved optimisers and schedules were loaded; return one note per change.

    ``lr``: every param group's ``lr``, ``initial_lr`` and TR reference ``tr_lr0``, and every schedule's base
    lrs, are multiplied by ``opt.lr / saved lr``, so the schedule continues where it was, at the new scale."""
    notes = []
    if "lr" in overrides:
        old = float(saved_options.get("lr", opt.lr))
        ratio = float(opt.lr) / old
        if ratio != 1.0:
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    for key in ("lr", "initial_lr", "tr_lr0"):
                        if key in group:
                            value = group[key]
                            group[key] = value.mul_(ratio) if isinstance(value, torch.Tensor) else value * ratio
            for scheduler in schedulers:
                for attr in ("base_lrs", "_last_lr"):
                    if isinstance(getattr(scheduler, attr, None), list):
                        setattr(scheduler, attr, [v * ratio for v in getattr(scheduler, attr)])
                if hasattr(scheduler, "min_lrs"):
                    scheduler.min_lrs = [v * ratio for v in scheduler.min_lrs]
        notes.append(f"override lr {old:g} -> {float(opt.lr):g}")
    if "dataroot" in overrides and saved_options.get("dataroot") != opt.dataroot:
        notes.append(f"override dataroot {saved_options.get('dataroot')} -> {opt.dataroot}")
    return notes


# ------------------------------------------------------------------------------------------------ divergence
def check_finite_networks(nets: Mapping[str, torch.nn.Module], where: str, kept: str) -> None:
    """TrainingDiverged when a weight or buffer of any net holds NaN/inf (one host sync for all tensors)."""
    bad = []
    for label, net in nets.items():
        bad += [f"{label}.{name}" for name in nonfinite_entries(net.state_dict())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise TrainingDiverged(f"{len(bad)} weight/buffer tensor(s) became NaN or inf ({shown}) {where}, so "
                               f"nothing was saved; {kept}")
