"""What ``--continue_train`` does with each option, in one table, and the schedule a resumed run follows.

:data:`RESUME_RULES` puts every train.py option in one class (a test checks that the parser has no option
missing from it):

* ``fixed`` -- built into the saved weights or optimiser state (the networks' shapes, the optimiser and its
  settings, the initialisation that made the weights). A different value is refused: the saved state would
  silently keep the old one or not load at all. Start a new run under another ``--name`` to change it.
* ``override`` -- changes what the networks compute or what the data mean (direction, preprocessing,
  dropout, the objective, the learning rate, the schedule's kind). Refused unless named in ``--override``;
  an override is recorded in ``train_opt.*``, the loss log's ``note`` column and the training state.
* ``data`` -- which images are trained on. Checked through the data fingerprint the state records
  (:func:`pix2pix_tr.training.guards.check_resume_data`); ``--override dataroot`` accepts other data.
* ``schedule`` -- the length of the run and the shape of the learning-rate schedule. They may change: the
  resumed run follows the schedule of the options now in force (:func:`schedule_at`), so extending a finished
  run trains its new epochs at the lr a run started with the final options would have used.
* ``free`` -- how the run is executed, saved, logged or shown (device, workers, batch size at an epoch
  boundary, AMP, saving and display frequencies, the official pix2pix's no-op flags ...). May change.

The checks run before anything is written, so ``train_opt.json`` never holds a refused value.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .errors import TrainingError
from .optimizers import make_scheduler

FIXED, OVERRIDE, DATA, SCHEDULE, FREE = "fixed", "override", "data", "schedule", "free"

#: option -> (class, why) for every train.py option; ``why`` completes the refusal of a fixed option or says
#: what an override changes.
RESUME_RULES: dict[str, tuple[str, str]] = {
    # the networks' shapes: the saved weights would not load
    "netG": (FIXED, "the saved weights have this generator's layers"),
    "netD": (FIXED, "the saved weights have this discriminator's layers"),
    "ngf": (FIXED, "the saved weights have this width"),
    "ndf": (FIXED, "the saved weights have this width"),
    "n_layers_D": (FIXED, "the saved weights have this many layers"),
    "norm": (FIXED, "the saved weights have these normalisation layers"),
    "input_nc": (FIXED, "the saved weights have this many input channels"),
    "output_nc": (FIXED, "the saved weights have this many output channels"),
    # what made the weights: only matters at the start, so a new value would do nothing
    "init_type": (FIXED, "it only sets the initial weights, which the resumed run already has"),
    "init_gain": (FIXED, "it only sets the initial weights, which the resumed run already has"),
    # the optimiser state: its class and settings are restored from the saved param groups
    "optimizer": (FIXED, "the saved optimiser state belongs to this optimiser"),
    "beta1": (FIXED, "the saved optimiser state keeps it"),
    "beta2": (FIXED, "the saved optimiser state keeps it"),
    "tr_lambda": (FIXED, "the saved optimiser state keeps it"),
    "tr_period": (FIXED, "the saved optimiser state keeps it"),
    "tr_mode": (FIXED, "the saved optimiser state keeps it"),
    "no_tr_inner_decay": (FIXED, "the saved optimiser state keeps it"),
    "tr_restart_each_epoch": (FIXED, "the TR cycles of the saved run follow it"),
    # what the networks compute or what the data mean: on purpose only
    "direction": (OVERRIDE, "the networks then map the other half of each pair"),
    "preprocess": (OVERRIDE, "the networks then see differently scaled and cropped images"),
    "load_size": (OVERRIDE, "the networks then see differently scaled images"),
    "crop_size": (OVERRIDE, "the networks then see crops of another size"),
    "no_flip": (OVERRIDE, "the augmentation changes"),
    "no_dropout": (OVERRIDE, "the generator then computes without (or with) dropout"),
    "gan_mode": (OVERRIDE, "the discriminator's outputs then mean something else"),
    "lambda_L1": (OVERRIDE, "the generator's objective changes"),
    "lambda_gp": (OVERRIDE, "the discriminator's objective changes"),
    "lr": (OVERRIDE, "the saved optimisers' and schedules' learning rates are rescaled by new/old"),
    "lr_policy": (OVERRIDE, "the learning-rate schedule is rebuilt with the new policy (a plateau schedule "
                            "starts without history)"),
    # which images: the state's data fingerprint
    "dataroot": (DATA, "accepts a data set that differs from the one the run was trained on"),
    "phase": (DATA, "checked with the data fingerprint"),
    "max_dataset_size": (DATA, "checked with the data fingerprint"),
    # the schedule of the options now in force
    "n_epochs": (SCHEDULE, ""), "n_epochs_decay": (SCHEDULE, ""), "lr_decay_iters": (SCHEDULE, ""),
    "epoch_count": (SCHEDULE, ""), "max_iters": (SCHEDULE, ""),
    # how the run is executed, saved, logged or shown
    **{name: (FREE, "") for name in (
        "name", "checkpoints_dir", "device", "seed", "num_threads", "batch_size", "no_pin_memory", "cache_images",
        "augment_on_device", "amp", "channels_last", "compile", "compile_mode", "compiled_optimizer", "fused",
        "continue_train", "override", "save_epoch_freq", "save_latest_freq", "print_freq", "display_freq",
        "tensorboard", "serial_batches", "save_by_iter", "no_html", "update_html_freq", "verbose", "use_wandb",
        "wandb_project_name", "suffix", "model", "dataset_mode", "pool_size", "epoch", "load_iter", "display_id",
        "display_winsize")},
}

#: what ``--override NAME`` accepts: the override class, and ``dataroot``
OVERRIDABLE_ON_RESUME = {name: why for name, (kind, why) in RESUME_RULES.items() if kind == OVERRIDE}
OVERRIDABLE_ON_RESUME["dataroot"] = RESUME_RULES["dataroot"][1]


def override_problem(overrides: Iterable[str], continue_train: bool) -> str | None:
    """Why ``--override`` cannot take these values (one sentence), or None."""
    overrides = list(overrides)
    for name in overrides:
        if name not in OVERRIDABLE_ON_RESUME:
            kind, why = RESUME_RULES.get(name, (None, ""))
            reason = f" ({why}: start a new run under another --name to change it)" if kind == FIXED else ""
            return (f"--override {name} is not an option that can change on resume{reason}; allowed: "
                    f"{', '.join(OVERRIDABLE_ON_RESUME)}")
    if overrides and not continue_train:
        return "--override only applies with --continue_train (a new run takes every option as given)"
    return None


def check_resume_options(saved: Mapping[str, Any], current: Mapping[str, Any], run_dir: Path, *,
                         overrides: Iterable[str] = (), saved_epoch: int | None = None,
                         keys: Iterable[str] | None = None, weights_only: bool = False) -> None:
    """Refuse (TrainingError, one sentence naming the flag) a resume whose options differ from the saved run's in
    a ``fixed`` option, or in an ``override`` option not named in ``overrides`` (only ``keys`` when given).
    ``--epoch_count``, when given, must be the epoch the saved run continues at (``saved_epoch``).
    ``weights_only``: ``run_dir`` holds weights without a training state (a new run starts from them)."""
    overrides = set(overrides)
    options_file = Path(run_dir) / "train_opt.txt"
    source = f"the weights in {run_dir} were" if weights_only else f"the run in {run_dir} was"
    for key, (kind, why) in RESUME_RULES.items():
        if kind not in (FIXED, OVERRIDE) or key not in saved or key not in current or saved[key] == current[key]:
            continue
        if (kind == OVERRIDE and key in overrides) or (keys is not None and key not in keys):
            continue
        differs = f"--continue_train: --{key} is {current[key]!r} but {source} trained with {saved[key]!r}"
        if kind == FIXED:
            raise TrainingError(f"{differs}, and {why}: {_as_given(key, saved[key])} (the saved run's options are in "
                                f"{options_file}), or start a new run under another --name")
        raise TrainingError(f"{differs}: pass the original run's options (see {options_file}), or add --override "
                            f"{key} to change it on purpose ({why})")
    epoch_count = current.get("epoch_count")
    if epoch_count is not None and saved_epoch is not None and int(epoch_count) != int(saved_epoch):
        raise TrainingError(f"--continue_train: --epoch_count {epoch_count} disagrees with the saved run in {run_dir}, "
                            f"which continues at epoch {saved_epoch}: drop --epoch_count (--continue_train restores "
                            f"the position) or pass --epoch_count {saved_epoch}")


def _as_given(key: str, value: Any) -> str:
    """How to pass ``value`` of ``--key`` on the command line."""
    if isinstance(value, bool):
        return f"pass --{key}" if value else f"drop --{key}"
    return f"pass --{key} {value}"


def override_notes(overrides: Iterable[str], saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One note per overridden option whose value changed (``lr`` and ``dataroot`` are noted by
    :func:`pix2pix_tr.training.guards.apply_overrides`, which also applies them)."""
    return [f"override {key} {saved.get(key)} -> {current.get(key)}" for key in sorted(overrides)
            if key not in ("lr", "dataroot") and key in saved and saved.get(key) != current.get(key)]


def keeps_schedule_state(saved: Mapping[str, Any], policy: str) -> bool:
    """Whether the saved schedules' state is loaded: only a plateau schedule continued as one (its state is the
    history of the losses, which no option gives); every other schedule is rebuilt by :func:`schedule_at`."""
    return policy == "plateau" and saved.get("lr_policy", policy) == "plateau"


def schedule_at(optimizer: torch.optim.Optimizer, scheduler: Any, *, policy: str, epoch: int, n_epochs: int,
                n_epochs_decay: int, lr_decay_iters: int):
    """The ``--lr_policy`` schedule of the options now in force, positioned at the start of ``epoch`` (1-based):
    the optimiser's lr is the value a run started from scratch with these options trains epoch ``epoch`` at.

    ``linear``, ``step`` and ``cosine`` are functions of the epoch and the options: the schedule is built anew from
    each group's initial lr (``initial_lr``, which ``--override lr`` rescales) and stepped ``epoch - 1`` times,
    exactly as the uninterrupted run steps it, so the lr is the same number, not a recomputation of it. A stale
    schedule state (one that baked in the old ``n_epochs``) is never used. ``plateau`` depends on the losses seen
    so far, so the given ``scheduler`` (fresh, or with its loaded state) is returned unchanged."""
    if policy == "plateau":
        return scheduler
    for group in optimizer.param_groups:
        initial = group.setdefault("initial_lr", group["lr"])
        if isinstance(group["lr"], torch.Tensor):  # a capturable optimiser keeps its lr in a tensor
            group["lr"].fill_(float(initial))
        else:
            group["lr"] = float(initial) if isinstance(initial, torch.Tensor) else initial
    rebuilt = make_scheduler(optimizer, policy, n_epochs=n_epochs, n_epochs_decay=n_epochs_decay,
                             lr_decay_iters=lr_decay_iters)
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": nothing is trained here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(int(epoch) - 1):
            rebuilt.step()
    return rebuilt

