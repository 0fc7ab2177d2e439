"""What ``checkpoints/NAME/`` holds and how it is written and read back.

* ``latest_net_G.pth``, ``latest_net_D.pth``: plain ``state_dict``s of the networks (what test.py loads);
  ``{epoch}_net_G.pth`` / ``{epoch}_net_D.pth`` every ``--save_epoch_freq`` epochs. All load with
  ``torch.load(path, weights_only=True)``.
* ``training_state.pth``: everything ``--continue_train`` needs to continue *exactly*: the networks, both
  optimisers (a TR optimiser's step counter and anchors are in its state_dict), both LR schedules, both
  GradScalers, the position (``epoch`` to run, ``epoch_iter`` batches of it already done, ``total_iters``),
  the running loss sums, the torch RNG states and the options of the run. Also loadable with
  ``weights_only=True`` (tensors, numbers, strings, lists and dicts only).

Every file is written to a temporary name and renamed (:mod:`pix2pix_tr.io`), the networks first and the
training state last (at an epoch end: the epoch's files, then ``latest_*``, then the state), so an interruption
at any moment leaves a consistent set: at worst the previous state, from which a resume redoes what followed.
:class:`Checkpointer` is the one writer of these files in a run: it keeps that order, checks that the networks
are finite before anything is written, and knows what was saved last (for the advice after a divergence).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..io import atomic_torch_save
from ..models.pix2pix import COMPUTE_ORDER
from ..safe_load import UnloadableCheckpointError, load_weights_only
from .errors import NoSpaceLeft, TrainingDiverged, TrainingError
from .guards import OVERRIDABLE, finite_check_tensors, no_space_message, nonfinite_message, tensor_bytes, tensor_norms

STATE_FILE = "training_state.pth"
#: written by a new run before its first weights and removed when its first training state is committed: weights in
#: a folder that holds it (and no state) are an interrupted start's (kill -9), not another run's
UNCOMMITTED = ".uncommitted"
FORMAT_VERSION = 1


def net_path(run_dir: Path, label: str | int, which: str) -> Path:
    """``run_dir/{label}_net_{which}.pth`` with label ``latest`` or an epoch number."""
    return Path(run_dir) / f"{label}_net_{which}.pth"


def save_networks(run_dir: Path, label: str | int, G: torch.nn.Module, D: torch.nn.Module) -> None:
    atomic_torch_save(_cpu_state(G.state_dict()), net_path(run_dir, label, "G"))
    atomic_torch_save(_cpu_state(D.state_dict()), net_path(run_dir, label, "D"))


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(run_dir: Path, state: dict[str, Any]) -> None:
    state = dict(state, format=FORMAT_VERSION)
    atomic_torch_save(state, Path(run_dir) / STATE_FILE)


def load_training_state(run_dir: Path) -> dict[str, Any]:
    """Read ``run_dir/training_state.pth`` (weights_only); TrainingError with a sentence when it is unusable."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"--continue_train: {path} does not exist, so there is nothing to resume; "
                            f"drop --continue_train to start a new run, or check --checkpoints_dir and --name")
    try:
        state = load_weights_only(path, advice="restore it from a backup, or start a new run under another --name")
    except UnloadableCheckpointError as exc:  # corrupt or foreign file
        raise TrainingError(f"--continue_train: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise TrainingError(f"--continue_train: {path} is not a pix2pix-TR training state (format "
                            f"{FORMAT_VERSION}); start a new run under another --name")
    return state


class Checkpointer:
    """The checkpoints of one run folder, in commit order.

    * :meth:`check` -- the losses since the last check and the networks' weights and buffers are finite (else
      :class:`TrainingDiverged`, nothing written); run before every save, and by the loop every ``--print_freq``
      iterations and at the end of each epoch. It is the loop's only host synchronisation between saves;
    * :meth:`save_epoch` -- an epoch's own files ``{epoch}_net_G/D.pth`` (at an epoch end, before anything else);
    * :meth:`save_latest` -- ``latest_net_G/D.pth``, then ``training_state.pth`` last: writing the state commits
      the save, so a kill at any moment leaves a state whose files all exist.

    Only the main process (``is_main``) writes; every process checks. ``last_saved`` is the ``total_iters`` of the
    last committed state of this run (None before the first), which the advice after a divergence names.
    """

    def __init__(self, run_dir: Path, *, is_main: bool, lr: float, last_saved: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.lr = lr
        self.last_saved = last_saved
        self._checked_at: int | None = None  # total_iters of the last passed check (weights change only in a step)

    def check(self, state, agree: Callable[[bool], bool] | None = None) -> None:
        """The running loss sums and every weight and buffer of G and D are finite, read back in one host
        transfer; else TrainingDiverged naming the loss that went NaN/inf first and its iteration (or the
        tensors), and what is kept on disk. ``agree(flag) -> bool`` makes the DDP ranks stop together."""
        if self._checked_at == state.total_iters:
            return
        names, tensors = finite_check_tensors({"G": state.G, "D": state.D})
        losses = state.meter.device_values()
        if losses is None:  # no iteration since the state was loaded: only the networks to check
            weights = tensor_norms(tensors).tolist()
        else:
            values = torch.cat([losses, tensor_norms(tensors, losses.dtype).to(losses.device)]).tolist()
            state.meter.keep(values[:len(losses)])  # the log row and the save that follow reuse them
            weights = values[len(losses):]
        loss = state.meter.first_nonfinite(COMPUTE_ORDER)
        bad = [name for name, value in zip(names, weights) if not math.isfinite(value)]
        where = f"by epoch {state.epoch}, iteration {state.epoch_iter} of the epoch ({state.total_iters} in total)"
        if agree is not None and agree(bool(loss or bad)) and not (loss or bad):
            raise TrainingDiverged(f"a loss, weight or buffer became NaN or inf in another process {where}, so "
                                   f"nothing was saved; {self.advice()}")
        if loss is not None:
            raise TrainingDiverged(self._loss_message(state, *loss))
        if bad:
            raise TrainingDiverged(nonfinite_message(bad, where, self.advice()))
        self._checked_at = state.total_iters

    def _loss_message(self, state, name: str, value: float, finite_steps: int) -> str:
        """The loss went non-finite ``finite_steps`` iterations into the current loss-log window."""
        first = state.total_iters - state.meter.window_n + finite_steps + 1
        where = f"at epoch {state.epoch}, iteration {state.epoch_iter - (state.total_iters - first)} of the epoch"
        found = "" if first == state.total_iters else (
            f"; found by the check after iteration {state.total_iters}: losses and weights are checked every "
            f"--print_freq iterations and before every save")
        return f"the {name} loss became {value} {where} ({first} in total{found}), so nothing was saved after " \
               f"it; {self.advice()}"

    def save_epoch(self, state, epoch: int) -> None:
        """``{epoch}_net_G.pth`` and ``{epoch}_net_D.pth`` (checked first)."""
        self.check(state)
        if self.is_main:
            save_networks(self.run_dir, epoch, state.G, state.D)

    def save_latest(self, state) -> None:
        """``latest_net_*.pth``, then the training state (checked first)."""
        self.check(state)
        if self.is_main:
            save_networks(self.run_dir, "latest", state.G, state.D)
            save_training_state(self.run_dir, state.state_dict())  # last: it commits the save
            (self.run_dir / UNCOMMITTED).unlink(missing_ok=True)
        self.last_saved = state.total_iters

    def save_iter(self, state) -> None:
        """``--save_by_iter``: ``iter_{total_iters}_net_G.pth`` and ``_D.pth`` (checked first), before the latest
        save that commits the state."""
        self.check(state)
        if self.is_main:
            save_networks(self.run_dir, f"iter_{state.total_iters}", state.G, state.D)

    @property
    def resumable(self) -> bool:
        return (self.run_dir / STATE_FILE).is_file()

    def advice(self) -> str:
        """What is on disk after a divergence and the command that goes on from there (each one tested)."""
        lower = f"{self.lr / 10:g}"
        if self.last_saved is None and not self.resumable:
            return (f"no checkpoint had been saved yet: run the same command again with a lower learning rate, "
                    f"e.g. --lr {lower} (or --amp none/bf16 instead of fp16, or check the data)")
        after = f", saved after {self.last_saved} iterations," if self.last_saved is not None else ""
        return (f"the last good checkpoint{after} is kept in {self.run_dir}: resume it with a lower learning rate by "
                f"adding --continue_train --override lr --lr {lower} to the same command (or --amp none/bf16 "
                f"instead of fp16, or check the data)")

    def data_error(self, exc: BaseException) -> TrainingError:
        """A training file that went bad during the run: what is kept and what to do."""
        if self.resumable:
            then = (f"the last saved state in {self.run_dir} is kept; fix the file and resume with the same command "
                    f"plus --continue_train")
        else:
            then = "nothing had been saved yet; fix the file and run the same command again"
        return TrainingError(f"{exc} ({then})")

    def no_space(self, exc: BaseException, state=None) -> NoSpaceLeft:
        """A full disk: the folder and (with ``state``) about how much a checkpoint needs."""
        needed = None
        if state is not None:
            needed = 3 * tensor_bytes([state.G.state_dict(), state.D.state_dict()]) + tensor_bytes(
                [state.opt_G.state_dict(), state.opt_D.state_dict()])
        return NoSpaceLeft(no_space_message(exc, self.run_dir, needed, resumable=self.resumable))
