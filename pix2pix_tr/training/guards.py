"""The training loop's reliability checks (docs/reliability.md), kept out of the loop so it stays readable.

* :func:`remove_orphan_tmp`: temporary files a killed save left in the run folder are removed at start.
* :func:`data_fingerprint` / :func:`check_resume_data`: the training state records the data set's size and a
  fingerprint (relative file names and sizes); a resume on other data is refused unless ``--override dataroot``.
* :data:`OVERRIDABLE` / :func:`apply_overrides`: ``--continue_train --override lr --lr X`` changes the learning
  rate of a saved run (optimisers, schedules and the TR reference lr rescaled by the same factor); which
  ``--override`` values a run accepts is checked by :class:`~pix2pix_tr.training.config.TrainConfig`.
* :func:`finite_check_tensors` / :func:`tensor_norms`: weights *and* buffers must be finite (a loss can stay finite
  while the weights run off to inf); one reduction per tensor, read back together with the running loss sums in
  one transfer by :meth:`pix2pix_tr.training.checkpoint.Checkpointer.check`.
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

from .._torch_compat import scheduler_lr_attributes
from ..io import TMP_GLOB, NoSpaceError
from .errors import TrainingError

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
                for attr in scheduler_lr_attributes():
                    if isinstance(getattr(scheduler, attr, None), list):
                        setattr(scheduler, attr, [v * ratio for v in getattr(scheduler, attr)])
                if hasattr(scheduler, "min_lrs"):
                    scheduler.min_lrs = [v * ratio for v in scheduler.min_lrs]
        notes.append(f"override lr {old:g} -> {float(opt.lr):g}")
    if "dataroot" in overrides and saved_options.get("dataroot") != opt.dataroot:
        notes.append(f"override dataroot {saved_options.get('dataroot')} -> {opt.dataroot}")
    return notes


# ------------------------------------------------------------------------------------------------ divergence
def finite_check_tensors(nets: Mapping[str, torch.nn.Module]) -> tuple[list[str], list[torch.Tensor]]:
    """The names (``G.model...``) and tensors of every floating-point weight and buffer of ``nets``."""
    names, tensors = [], []
    for label, net in nets.items():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                names.append(f"{label}.{name}")
                tensors.append(tensor)
    return names, tensors


@torch.no_grad()
def tensor_norms(tensors: list[torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The L2 norm of each tensor, finite exactly when the tensor holds no NaN/inf and its norm does not overflow
    float32 (weights that large have diverged too: it takes values near 1e19). One reduction pass over each
    tensor, no temporary of its size (``isfinite`` allocates a bool tensor per tensor), results stacked on the
    first tensor's device with ``dtype``, for the caller to read back in one transfer. The norm rather than the
    sum: on a busy multi-core CPU torch's parallel sum waits on its threads several times longer (measured in
    ``benchmarks/weight_check.py``)."""
    if not tensors:
        return torch.zeros(0, dtype=dtype)
    device = tensors[0].device
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:  # half precision is reduced in float32, so a healthy network never overflows
        norm = torch.linalg.vector_norm(t, dtype=torch.float32) if t.dtype in _HALF else torch.linalg.vector_norm(t)
        groups.setdefault(t.device, []).append(norm.float())
    stacked = [torch.stack(norms).to(device) for norms in groups.values()]
    return (stacked[0] if len(stacked) == 1 else torch.cat(stacked)).to(dtype)


_HALF = (torch.float16, torch.bfloat16)


def nonfinite_message(bad: list[str], where: str, kept: str) -> str:
    """The divergence sentence for weights/buffers ``bad`` (names), ``where`` they were found, what is ``kept``."""
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"{len(bad)} weight/buffer tensor(s) became NaN or inf ({shown}) {where}, so nothing was saved; {kept}"
