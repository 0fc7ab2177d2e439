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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch

from ..io import atomic_torch_save
from ..safe_load import UnloadableCheckpointError, load_weights_only
from .errors import TrainingError

STATE_FILE = "training_state.pth"
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


# Options that define the networks and the optimiser state: a resumed run must use the same values.
# The optimiser settings are restored from the saved param groups on resume, so a changed value would be
# silently ignored: refuse it instead.
RESUME_MUST_MATCH = ("netG", "netD", "ngf", "ndf", "n_layers_D", "norm", "input_nc", "output_nc", "no_dropout",
                     "optimizer", "gan_mode", "lr_policy", "lr", "beta1", "beta2", "tr_lambda", "tr_period",
                     "tr_mode", "no_tr_inner_decay", "tr_restart_each_epoch")


def check_resume_options(saved: dict[str, Any], current: dict[str, Any], run_dir: Path,
                         overrides: Iterable[str] = ()) -> None:
    """Refuse to resume with options that change the networks or the optimiser (one sentence, names the flag),
    except those the user names in ``--override`` (see :data:`pix2pix_tr.training.guards.OVERRIDABLE`)."""
    from .guards import OVERRIDABLE

    for key in RESUME_MUST_MATCH:
        if key in saved and key in current and saved[key] != current[key] and key not in overrides:
            hint = f", or add --override {key} to change it on purpose" if key in OVERRIDABLE else ""
            raise TrainingError(
                f"--continue_train: --{key} is {current[key]!r} but the run in {run_dir} was trained with "
                f"{saved[key]!r}; pass the original run's options (see {Path(run_dir) / 'train_opt.txt'}){hint}")
