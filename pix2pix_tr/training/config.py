"""What a training run is: :class:`TrainConfig`, built once from train.py's parsed options.

The loop reads fields of this frozen dataclass, never the argparse Namespace. :meth:`TrainConfig.from_options`
takes every field from the Namespace :func:`pix2pix_tr.options.parse_train` returns (the parser defines them all),
keeps a copy of all the options in :attr:`TrainConfig.options` (for ``train_opt.txt``/``train_opt.json`` and the
training state) and checks what only training decides (:func:`training_option_problem`): the option layer
(:mod:`pix2pix_tr.options`) checks the flags themselves and imports nothing of the training package.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import TrainingError
from .resume import override_problem
from .tensorboard import tensorboard_problem
from ..report.wandb_log import wandb_problem


class ConfigError(TrainingError):
    """An option combination training cannot run with (one sentence naming the flag); train.py exits 2."""


@dataclass(frozen=True)
class TrainConfig:
    """The options the training loop reads (names and meanings as in ``train.py --help``)."""

    # experiment
    dataroot: str
    name: str
    checkpoints_dir: str
    phase: str
    device: str
    seed: int
    # data
    direction: str
    preprocess: str
    load_size: int
    crop_size: int
    no_flip: bool
    max_dataset_size: float
    input_nc: int
    output_nc: int
    batch_size: int
    num_threads: int
    no_pin_memory: bool
    cache_images: bool
    augment_on_device: bool
    # networks
    netG: str
    netD: str
    ngf: int
    ndf: int
    n_layers_D: int
    norm: str
    no_dropout: bool
    init_type: str
    init_gain: float
    # objective and optimisers
    gan_mode: str
    lambda_L1: float
    lambda_gp: float
    optimizer: str
    lr: float
    beta1: float
    beta2: float
    tr_lambda: float
    tr_period: int
    tr_mode: str
    no_tr_inner_decay: bool
    tr_restart_each_epoch: bool
    fused: bool
    compiled_optimizer: bool
    lr_policy: str
    n_epochs: int
    n_epochs_decay: int
    lr_decay_iters: int
    # speed
    amp: str
    channels_last: bool
    compile: bool
    compile_mode: str
    # resuming, saving and display
    continue_train: bool
    override: tuple[str, ...]
    save_epoch_freq: int
    save_latest_freq: int
    print_freq: int
    display_freq: int
    max_iters: int
    tensorboard: bool
    # the official pix2pix's flags that do something here (docs/migration.md)
    epoch_count: int | None
    serial_batches: bool
    save_by_iter: bool
    no_html: bool
    update_html_freq: int | None
    display_winsize: int
    verbose: bool
    use_wandb: bool
    wandb_project_name: str
    #: every option as parsed (also those the loop does not read), for the files that describe the run
    options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_options(cls, opt: argparse.Namespace) -> "TrainConfig":
        """The config of ``opt`` (a Namespace of :func:`pix2pix_tr.options.parse_train`); ConfigError (one sentence
        naming the flag) for options training cannot run with."""
        problem = training_option_problem(opt)
        if problem:
            raise ConfigError(problem)
        values = {f.name: getattr(opt, f.name) for f in fields(cls) if f.name != "options"}
        values["override"] = tuple(values["override"])
        return cls(**values, options=dict(vars(opt)))

    @property
    def run_dir(self) -> Path:
        """``CHECKPOINTS_DIR/NAME``: where the run writes."""
        return Path(self.checkpoints_dir) / self.name

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay


def training_option_problem(opt: argparse.Namespace) -> str | None:
    """What is wrong with ``opt`` for training, as one sentence naming the flag (None when nothing is)."""
    problem = override_problem(opt.override, opt.continue_train)
    if problem:
        return problem
    if opt.tensorboard and tensorboard_problem():
        return tensorboard_problem()
    if opt.use_wandb:
        return wandb_problem()
    return None
