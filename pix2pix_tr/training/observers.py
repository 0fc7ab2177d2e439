"""What the main process shows and records of a run, besides its checkpoints.

:class:`Observers` holds the loss log (``loss_log.csv``, :mod:`pix2pix_tr.training.loss_log`), the web gallery
(``web/index.html``; none with ``--no_html``), TensorBoard (``--tensorboard``), Weights & Biases (``--use_wandb``),
the progress bar, the loss plot and the console lines. On the other ranks of a distributed run it holds nothing
and every method returns at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ..cli import json_clean
from .config import TrainConfig
from .errors import TrainingError
from .loss_log import LossLog
from .tensorboard import TensorBoardLog

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


def loss_names(gan_mode: str) -> tuple[str, ...]:
    """The loss columns of a run (``D_gp`` with wgangp)."""
    return LOSS_NAMES + (("D_gp",) if gan_mode == "wgangp" else ())


class Observers:
    """The main process's observers of a run. ``notes`` (e.g. the ``--override`` changes of a resume) go into the
    ``note`` column of the first log row."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, *, active: bool, resume_at: int | None,
                 notes: list[str]) -> None:
        self.active = active
        self.run_dir = Path(run_dir)
        self.total_epochs = cfg.total_epochs
        self.display_freq = cfg.display_freq
        self.pending_notes = list(notes)
        self.last_means: dict[str, float] = {}
        self.t0 = time.time()
        self.bar = None
        self.log = self.gallery = self.tb = self.wandb = None
        if not active:
            return
        from ..report.training_page import TrainingGallery

        columns = ["epoch", "epoch_iter", "total_iters", *loss_names(cfg.gan_mode), "lr_G", "lr_D", "time", "note"]
        self.log = LossLog(self.run_dir / "loss_log.csv", columns, resume_at=resume_at)
        if not cfg.no_html:
            self.gallery = TrainingGallery(self.run_dir / "web", title=f"pix2pix-TR training: {cfg.name}",
                                           reset=resume_at is None, image_width=cfg.display_winsize)
        self.tb = TensorBoardLog(self.run_dir) if cfg.tensorboard else None
        if cfg.use_wandb:
            from ..report.wandb_log import WandbLog

            self.wandb = WandbLog(self.run_dir, project=cfg.wandb_project_name, name=cfg.name,
                                  config=json_clean(dict(cfg.options)), resume=resume_at is not None,
                                  error=TrainingError)

    def __enter__(self) -> "Observers":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close_bar()
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.close(failed=exc_type is not None)
            self.wandb = None

    # ------------------------------------------------------------------------------------------ per iteration
    def start_epoch(self, epoch: int, done: int, total: int) -> None:
        """A progress bar for ``epoch`` (``done`` of ``total`` batches already done)."""
        if not self.active:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch}/{self.total_epochs}", unit="it",
                        dynamic_ncols=True, leave=False, file=sys.stderr, mininterval=1.0)

    def iteration(self, total_iters: int, epoch_iter: int) -> None:
        """One more iteration on the bar; every ``--display_freq`` iterations (and at an epoch's first) it shows the
        means of the last loss-log row, which are on the host already (no read of this iteration's losses)."""
        if self.bar is None:
            return
        self.bar.update(1)
        if self.last_means and (total_iters % self.display_freq == 0 or epoch_iter == 1):
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in self.last_means.items()}, refresh=False)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def log_row(self, state, means: Mapping[str, float]) -> None:
        """One loss-log row (and TensorBoard scalars): the mean losses since the previous row."""
        if self.log is None or not means:
            return
        self.last_means = dict(means)
        row = {"epoch": state.epoch, "epoch_iter": state.epoch_iter, "total_iters": state.total_iters, **means,
               "lr_G": state.opt_G.param_groups[0]["lr"], "lr_D": state.opt_D.param_groups[0]["lr"],
               "time": round(time.time() - self.t0, 3), "note": "; ".join(self.pending_notes)}
        self.log.append(row)
        self.pending_notes.clear()
        if self.tb is not None:
            self.tb.add_row(row)
        if self.wandb is not None:
            self.wandb.add_row(row)

    # ------------------------------------------------------------------------------------------ per epoch
    def epoch_visuals(self, epoch: int, visuals: Mapping[str, torch.Tensor], state) -> None:
        """The gallery row (and TensorBoard / W&B images) of an epoch: the first sample of its last batch (called
        at a saved epoch's end, and every ``--update_html_freq`` iterations for the current epoch)."""
        if not visuals or (self.gallery is None and self.tb is None and self.wandb is None):
            return
        shown = {k: v[:1].detach().float().cpu().contiguous() for k, v in visuals.items()}
        if self.gallery is not None:
            self.gallery.add_epoch(epoch, shown, info={"total_iters": state.total_iters,
                                                       "lr_G": f"{state.opt_G.param_groups[0]['lr']:.3g}"})
        if self.tb is not None:
            self.tb.add_visuals(epoch, state.total_iters, shown)
        if self.wandb is not None:
            self.wandb.add_visuals(epoch, state.total_iters, shown)

    def end_epoch(self, epoch: int, state) -> None:
        """After an epoch's checkpoint: redraw the loss plot, print one line."""
        if not self.active:
            return
        _plot(self.run_dir)
        print(f"end of epoch {epoch}/{self.total_epochs}: {state.total_iters} iterations, "
              f"{time.time() - self.t0:.0f} s, lr {state.opt_G.param_groups[0]['lr']:.3g}", flush=True)

    def say(self, *args: Any) -> None:
        if self.active:
            print(*args, flush=True)


def _plot(run_dir: Path) -> None:
    from ..report.plots import plot_losses

    csv_path = run_dir / "loss_log.csv"
    if csv_path.is_file():
        try:
            plot_losses(csv_path, run_dir / "loss_curve.png")
        except Exception as exc:  # a plot must never stop days of training
            print(f"warning: could not draw {run_dir / 'loss_curve.png'} ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
