"""Where a run stands: :class:`TrainState`, everything ``--continue_train`` needs, with one definition of it.

``state_dict()`` is what ``training_state.pth`` holds (the key names are the file format; a state written by
an earlier release loads unchanged), ``load_state_dict()`` puts a saved one back into freshly built objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import restore_rng_state, rng_state
from .errors import TrainingError
from .loss_log import LossMeter


@dataclass
class TrainState:
    """The position of a run (``epoch`` to run, ``epoch_iter`` batches of it done, ``total_iters``) and the
    objects whose state changes while training. ``options``, ``data``, ``world_size`` and ``batch_size`` describe
    the current run; a resume checks the saved ones against them."""

    G: nn.Module
    D: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: Any
    sched_D: Any
    scaler_G: torch.amp.GradScaler
    scaler_D: torch.amp.GradScaler
    options: dict[str, Any]  # JSON-safe, as options_to_json_dict gives them
    data: dict[str, Any]  # the data fingerprint (guards.data_fingerprint + dataroot)
    world_size: int
    batch_size: int
    meter: LossMeter = field(default_factory=LossMeter)
    epoch: int = 1
    epoch_iter: int = 0
    total_iters: int = 0
    #: every ``--override`` applied to this run so far: ``{"total_iters": where, "note": what}``
    overrides: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------ position
    def sampler_start(self, num_samples: int) -> int:
        """How many of this rank's samples of the current epoch are already done."""
        return min(self.epoch_iter * self.batch_size, num_samples)

    def advance(self) -> None:
        """One iteration done."""
        self.epoch_iter += 1
        self.total_iters += 1

    def next_epoch(self) -> None:
        self.epoch, self.epoch_iter = self.epoch + 1, 0

    def record_overrides(self, notes: list[str]) -> None:
        self.overrides += [{"total_iters": self.total_iters, "note": note} for note in notes]

    # ------------------------------------------------------------------------------------------ save / restore
    def state_dict(self) -> dict[str, Any]:
        """The content of ``training_state.pth`` (without its ``format`` entry, which the writer adds)."""
        return {"epoch": self.epoch, "epoch_iter": self.epoch_iter, "total_iters": self.total_iters,
                "G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "sched_G": self.sched_G.state_dict(), "sched_D": self.sched_D.state_dict(),
                "scaler_G": self.scaler_G.state_dict(), "scaler_D": self.scaler_D.state_dict(),
                "meter": self.meter.state_dict(), "rng": rng_state(), "options": self.options,
                "world_size": self.world_size, "batch_size": self.batch_size, "data": self.data,
                "overrides": list(self.overrides)}

    def load_state_dict(self, saved: dict[str, Any], *, schedules: bool = True) -> None:
        """Continue from ``saved`` (the networks, optimisers, schedules, scalers, running loss sums, position and
        RNGs); ``schedules=False`` leaves the schedules as built (the loop rebuilds them from the options now in
        force: :func:`~pix2pix_tr.training.resume.schedule_at`). ``options``, ``data``, ``world_size`` and
        ``batch_size`` stay the current run's: the caller checks the saved ones
        (:func:`~pix2pix_tr.training.resume.check_resume_options`,
        :func:`~pix2pix_tr.training.guards.check_resume_data`); a run stopped mid-epoch must resume with the same
        batch size and number of processes (TrainingError otherwise)."""
        epoch, epoch_iter = int(saved["epoch"]), int(saved["epoch_iter"])
        if epoch_iter and (saved.get("world_size") != self.world_size or saved.get("batch_size") != self.batch_size):
            raise TrainingError(
                f"--continue_train: the run stopped in the middle of epoch {epoch} with --batch_size "
                f"{saved.get('batch_size')} on {saved.get('world_size')} process(es); resume it with the same "
                f"--batch_size and number of processes (they may change at an epoch boundary)")
        self.G.load_state_dict(saved["G"])
        self.D.load_state_dict(saved["D"])
        self.opt_G.load_state_dict(saved["opt_G"])
        self.opt_D.load_state_dict(saved["opt_D"])
        if schedules:
            self.sched_G.load_state_dict(saved["sched_G"])
            self.sched_D.load_state_dict(saved["sched_D"])
        for scaler, state in ((self.scaler_G, saved["scaler_G"]), (self.scaler_D, saved["scaler_D"])):
            if state:  # empty when the run was saved without --amp fp16: the fresh scaler starts over
                scaler.load_state_dict(state)
        self.meter.load_state_dict(saved["meter"])
        self.epoch, self.epoch_iter, self.total_iters = epoch, epoch_iter, int(saved["total_iters"])
        self.overrides = list(saved.get("overrides", []))
        restore_rng_state(saved.get("rng", {}))
