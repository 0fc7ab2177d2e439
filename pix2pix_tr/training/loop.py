"""The training loop of train.py: pix2pix with one optimiser per network, resumable, observable, distributed.

Read :func:`run` top to bottom, section by section: *build* (the saved run to resume, data, networks,
optimisers), *restore* (``--continue_train``), *observers* (loss log, gallery, TensorBoard, progress bar), *epochs*
(iterations of :func:`pix2pix_tr.models.pix2pix.train_step`), *end of epoch* (schedules, the epoch's files, the
state) and *finish*. It reads a :class:`~pix2pix_tr.training.config.TrainConfig`, keeps the position and
everything a resume needs in a :class:`~pix2pix_tr.training.state.TrainState`, and writes checkpoints through a
:class:`~pix2pix_tr.training.checkpoint.Checkpointer`.

Exact resume. Everything random in an iteration is fixed by its position: the data order and crop/flip come
from ``(seed, epoch, index)`` (:mod:`pix2pix_tr.data`), and the global torch RNG (dropout, the WGAN-GP
interpolation) is reseeded before every iteration from ``(seed, rank, total_iters)``. Together with the
networks, the optimisers (TR step counters and anchors included), the schedules, the scalers and the
running loss sums in ``training_state.pth``, a resumed run repeats exactly what the uninterrupted run
would have done (on CPU; CUDA kernels may be non-deterministic).

Stopping. Ctrl-C or SIGTERM sets a flag; the loop finishes the current iteration, saves the latest state
(mid-epoch if need be) and returns ``status="interrupted"`` (a second Ctrl-C aborts at once). ``--max_iters``
stops the same way, and a run resumed at its ``--max_iters`` stops before training. Under torchrun the ranks
agree on a signal at the next log row or epoch end.

Divergence, without a host synchronisation per iteration. The losses stay on the device; their running sums
(:class:`~pix2pix_tr.training.loss_log.LossMeter`) and the norms of every weight and buffer are read back in one
transfer every ``--print_freq`` iterations, at each epoch end and before every save
(:meth:`Checkpointer.check`). A NaN/inf raises :class:`TrainingDiverged` naming the loss and the iteration it
first appeared in (or the tensors), without saving: the updates since then happened in memory only, and the
last checkpoint on disk is the last good one.

Nothing lost (docs/reliability.md). One process writes a run folder at a time (:class:`RunLock`); at an epoch
end the epoch's files (``{epoch}_net_*.pth``, the gallery row) are written before the latest networks and the
training state, and the state last, so a kill at any moment resumes from a state whose files all exist and
redoes whatever came after it. A full disk ends with :class:`NoSpaceLeft` (exit 3) naming the folder and the
space to free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import threading
from argparse import Namespace
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..io import atomic_write_text, is_no_space
from ..models import GANLoss, count_parameters, define_D, define_G
from ..models.pix2pix import train_step
from ..options import format_options, non_default_options, options_to_json_dict
from ..paths import PathError, check_no_overlap, ensure_writable_dir, is_within, join_name
from .checkpoint import STATE_FILE, UNCOMMITTED, Checkpointer, load_training_state
from .config import TrainConfig
from .distributed import DistContext, ddp_wrap, init_distributed
from .errors import NoSpaceLeft, TrainingError
from .guards import apply_overrides, check_resume_data, data_fingerprint, no_space_message, remove_orphan_tmp
from .lock import RunLock
from .observers import LOSS_NAMES, Observers
from .optimizers import make_optimizer, make_scheduler, step_scheduler
from .pretrained import (MEANING_OPTIONS, is_pretrained_folder, keep_pretrained, load_pretrained, weights_folder,
                         weights_options)
from .resume import check_resume_options, keeps_schedule_state, override_notes, schedule_at
from .state import TrainState

__all__ = ["train", "run", "TrainResult", "LOSS_NAMES"]


@dataclass
class TrainResult:
    """What :func:`train` returns: how it ended, where, and the trained (unwrapped) networks."""

    status: str  # "finished", "interrupted" (signal) or "stopped" (--max_iters)
    epoch: int  # the epoch the next run would start (or continue)
    total_iters: int
    run_dir: Path
    G: nn.Module | None = field(default=None, repr=False)
    D: nn.Module | None = field(default=None, repr=False)


def train(opt: Namespace | TrainConfig, *, after_iteration: Callable[[int], None] | None = None) -> TrainResult:
    """Train pix2pix with the options of :func:`pix2pix_tr.options.parse_train` (or a :class:`TrainConfig`).
    Under torchrun, every rank calls this. ``after_iteration(total_iters)`` is a hook for tests and tools (called
    on every rank)."""
    cfg = opt if isinstance(opt, TrainConfig) else TrainConfig.from_options(opt)
    ctx = init_distributed(cfg.device)
    lock = None
    try:
        run_dir = _checked_run_dir(cfg)
        created = not run_dir.exists()
        if ctx.is_main:
            lock = RunLock(run_dir).acquire()
        found_before = _file_identities(run_dir)
        try:
            return run(cfg, ctx, run_dir, after_iteration)
        except BaseException as exc:
            if lock is not None:
                remove_uncommitted_weights(run_dir, found_before)  # never raises
            if created and lock is not None:
                lock.remove_folder_if_empty()  # a run that failed its checks leaves no folder behind; never raises
            if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, TrainingError) and is_no_space(exc):
                # a full disk before the loop (the loop reports its own)
                raise NoSpaceLeft(no_space_message(exc, run_dir, None, resumable=(run_dir / STATE_FILE).is_file())
                                  ) from exc
            raise
    finally:
        if lock is not None:
            lock.release()
        ctx.close()


def run(cfg: TrainConfig, ctx: DistContext, run_dir: Path,
        after_iteration: Callable[[int], None] | None = None) -> TrainResult:
    """The loop (see the module docstring); :func:`train` calls it holding the run folder's lock."""
    from ..data import DatasetError

    device = ctx.device
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    # -- build: the saved run (checked before anything is written), the data, the networks and their optimisers
    if ctx.is_main:
        orphans = remove_orphan_tmp(run_dir)  # we hold the lock: these are from a killed save
        if orphans:
            say(ctx, f"removed {len(orphans)} temporary file(s) left by an interrupted save in {run_dir}")
    saved, from_weights = _saved_run(cfg, ctx, run_dir)
    _print_configuration(cfg, ctx)
    dataset, sampler, loader = build_data(cfg, ctx)
    data_info = _start_run_folder(cfg, ctx, run_dir, dataset, saved, from_weights)
    torch.manual_seed(cfg.seed)  # the initial weights: identical on every rank
    G, D = build_networks(cfg)
    if from_weights:
        ctx.barrier()  # rank 0 has moved the weights into pretrained/
        say(ctx, load_pretrained(run_dir, G, D, cfg.options))
        if cfg.epoch_count is not None:
            say(ctx, f"--epoch_count {cfg.epoch_count}: the new run's epochs and schedule start at epoch "
                     f"{cfg.epoch_count}")
    for net in (G, D):
        net.to(device, memory_format=memory_format).train()
    if cfg.verbose:
        say(ctx, describe_networks(G, D))
    state = TrainState(G, D, *build_optimizers(cfg, G, D), *build_scalers(cfg, device),
                       options=options_to_json_dict(cfg.options), data=data_info, world_size=ctx.world_size,
                       batch_size=cfg.batch_size)
    if cfg.epoch_count is not None:  # the official's first epoch number (a resume checks it against the state)
        state.epoch = cfg.epoch_count

    # -- restore (--continue_train): every saved object, then the --override changes on top; the schedules are
    #    those of the options now in force, at the resumed epoch (resume.py)
    notes: list[str] = []
    if saved is not None:
        state.load_state_dict(saved, schedules=keeps_schedule_state(saved["options"], cfg.lr_policy))
        notes = apply_overrides(cfg.override, saved["options"], cfg, (state.opt_G, state.opt_D),
                                (state.sched_G, state.sched_D))
        notes += override_notes(cfg.override, saved["options"], options_to_json_dict(cfg.options))
        state.record_overrides(notes)
        for note in notes:
            say(ctx, f"--override: {note}")
        say(ctx, f"resuming {run_dir} at epoch {state.epoch}, iteration {state.epoch_iter} of the epoch "
                 f"({state.total_iters} iterations done)")
    if saved is not None or state.epoch != 1:
        state.sched_G, state.sched_D = (
            schedule_at(opt, sched, policy=cfg.lr_policy, epoch=state.epoch, n_epochs=cfg.n_epochs,
                        n_epochs_decay=cfg.n_epochs_decay, lr_decay_iters=cfg.lr_decay_iters)
            for opt, sched in ((state.opt_G, state.sched_G), (state.opt_D, state.sched_D)))
    G_run, D_run, D_local = wrap_for_training(G, D, ctx, compile=cfg.compile, mode=cfg.compile_mode)
    step = partial(train_step, G_run, D_run, state.opt_G, state.opt_D, gan_loss=GANLoss(cfg.gan_mode).to(device),
                   lambda_L1=cfg.lambda_L1, lambda_gp=cfg.lambda_gp, D_local=D_local, scaler_G=state.scaler_G,
                   scaler_D=state.scaler_D, autocast=autocast_factory(cfg.amp, device))
    agree = ctx.any if ctx.distributed else None  # the DDP ranks take every stop decision together
    cuda_graphs = cfg.compile and cfg.compile_mode == "reduce-overhead" and device.type == "cuda"
    checkpointer = Checkpointer(run_dir, is_main=ctx.is_main, lr=cfg.lr,
                                last_saved=state.total_iters if saved is not None else None)
    batches_per_epoch = math.ceil(sampler.num_samples / cfg.batch_size)
    if state.epoch > cfg.total_epochs or (cfg.max_iters and state.total_iters >= cfg.max_iters):
        return _nothing_to_do(cfg, ctx, state, run_dir)  # checked before a step: a resume at the limit trains none

    # -- observers (rank 0 only): loss log, gallery, TensorBoard, progress bar
    observers = Observers(cfg, run_dir, active=ctx.is_main, resume_at=state.total_iters if saved else None,
                          notes=notes)

    # -- epochs: no host synchronisation between log rows (the losses stay on the device; checkpointer.check
    #    reads them, and the weights, every --print_freq iterations)
    status, visuals = "finished", {}
    with StopFlag(ctx) as stop_flag, observers:
        try:
            while state.epoch <= cfg.total_epochs:
                sampler.set_epoch(state.epoch, start=state.sampler_start(sampler.num_samples))
                if cfg.tr_restart_each_epoch and state.epoch_iter == 0:
                    restart_tr_cycles(state.opt_G, state.opt_D)
                observers.start_epoch(state.epoch, state.epoch_iter, batches_per_epoch)
                stop = False
                for batch in loader:
                    torch.manual_seed(step_seed(cfg.seed, ctx.rank, state.total_iters))
                    ctx.sync_buffers(D)  # rank 0's BatchNorm statistics, before any forward saves them
                    if cuda_graphs:  # a new iteration: the previous one's graph outputs may be overwritten
                        torch.compiler.cudagraph_mark_step_begin()
                    real_A, real_B = dataset.to_device(batch, device, memory_format)
                    losses, fake_B = step(real_A, real_B)
                    state.advance()
                    state.meter.add(losses)
                    observers.iteration(state.total_iters, state.epoch_iter)
                    if state.total_iters % cfg.print_freq == 0:  # a log row: check, log, (DDP) agree on a signal
                        checkpointer.check(state, agree)
                        observers.log_row(state, state.meter.take_window())
                        stop_flag.agree()
                    if after_iteration is not None:
                        after_iteration(state.total_iters)
                    visuals = {"real_A": real_A, "fake_B": fake_B, "real_B": real_B}  # the gallery shows the last
                    stop = stop_flag.stop or bool(cfg.max_iters and state.total_iters >= cfg.max_iters)
                    if stop:
                        break
                    if cfg.update_html_freq and state.total_iters % cfg.update_html_freq == 0:
                        observers.epoch_visuals(state.epoch, visuals, state)  # the official's HTML refresh
                    if (cfg.save_latest_freq and state.total_iters % cfg.save_latest_freq == 0
                            and state.epoch_iter < batches_per_epoch):
                        if cfg.save_by_iter:
                            checkpointer.save_iter(state)
                        checkpointer.save_latest(state)
                observers.close_bar()
                if stop and state.epoch_iter < batches_per_epoch:
                    checkpointer.save_latest(state)  # mid-epoch
                    status = "interrupted" if stop_flag.stop else "stopped"
                    break

                # -- end of epoch: check, log row and schedules; the epoch's files first, the state last (a kill
                #    in between redoes this epoch end)
                checkpointer.check(state, agree)
                observers.log_row(state, state.meter.take_window())
                metric = ctx.mean(state.meter.take_epoch_G())
                step_scheduler(state.sched_G, metric)
                step_scheduler(state.sched_D, metric)
                if not stop:
                    stop_flag.agree()
                    stop = stop_flag.stop
                finished = state.epoch
                if finished % cfg.save_epoch_freq == 0 or finished == cfg.total_epochs:
                    checkpointer.save_epoch(state, finished)
                    observers.epoch_visuals(finished, visuals, state)
                visuals = {}
                state.next_epoch()
                checkpointer.save_latest(state)
                observers.end_epoch(finished, state)
                if stop:
                    status = "interrupted" if stop_flag.stop else "stopped"
                    break
        except DatasetError as exc:  # a file went bad during training: the last saved state is kept
            raise checkpointer.data_error(exc) from exc
        except Exception as exc:
            if not is_no_space(exc):
                raise
            raise checkpointer.no_space(exc, state) from exc

    # -- finish
    _say_how_it_ended(ctx, status, stop_flag.signal_name, state, cfg.max_iters, run_dir)
    ctx.barrier()
    return TrainResult(status, state.epoch, state.total_iters, run_dir, G, D)


# ----------------------------------------------------------------------------------------------------
# the pieces the loop is built from


def _checked_run_dir(cfg: TrainConfig) -> Path:
    """``CHECKPOINTS_DIR/NAME``, writable and apart from the data (TrainingError naming the flag). The whole
    ``--dataroot`` is input, not only its ``PHASE`` split, and the check comes before anything is created."""
    try:
        run_dir = join_name(cfg.checkpoints_dir, cfg.name)
        data = _data_dir(cfg)
        check_no_overlap(run_dir, {"--dataroot": data}, output_flag="--checkpoints_dir/--name")
        if data is not None and is_within(data, run_dir):
            raise PathError(f"--dataroot {data} is inside the run folder {run_dir}: the run writes its checkpoints "
                            f"and gallery there; move the data, or choose another --checkpoints_dir/--name")
        ensure_writable_dir(cfg.checkpoints_dir, flag="--checkpoints_dir")
        if run_dir.exists():
            ensure_writable_dir(run_dir, flag="--name")
    except PathError as exc:
        raise TrainingError(str(exc)) from exc
    return run_dir


def _saved_run(cfg: TrainConfig, ctx: DistContext, run_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """``(saved training state or None, from_weights)``: what ``--continue_train`` resumes, checked against the
    options; ``from_weights`` when the folder holds weights without a state (e.g. an official pix2pix folder)."""
    note = prepare_run_dir(run_dir, cfg.continue_train)
    if note:
        say(ctx, note)
    if cfg.norm == "syncbatch" and ctx.distributed and ctx.device.type != "cuda":
        raise TrainingError("--norm syncbatch synchronises batch statistics between GPUs and needs CUDA; on CPU "
                            "use --norm batch (or instance)")
    from_weights = cfg.continue_train and is_pretrained_folder(run_dir)
    saved = load_training_state(run_dir) if cfg.continue_train and not from_weights else None
    current = options_to_json_dict(cfg.options)
    if saved is not None:  # refused before anything is written: train_opt.json never holds a refused value
        check_resume_options(saved["options"], current, run_dir, overrides=cfg.override,
                             saved_epoch=int(saved["epoch"]))
    if from_weights:
        folder = weights_folder(run_dir)
        check_resume_options(weights_options(folder), current, folder, overrides=cfg.override,
                             keys=MEANING_OPTIONS, weights_only=True)
    return saved, from_weights


def _start_run_folder(cfg: TrainConfig, ctx: DistContext, run_dir: Path, dataset, saved: dict[str, Any] | None,
                      from_weights: bool) -> dict[str, Any]:
    """Check the data against the saved run's, then (rank 0) keep pretrained weights aside and write
    ``train_opt.txt``/``.json``: after the data checks, so a typo in --dataroot leaves no folder behind. Returns
    the data fingerprint the training state records."""
    data_info = {**data_fingerprint(dataset.dir, dataset.paths), "dataroot": str(cfg.dataroot)}
    data_note = check_resume_data(saved.get("data") if saved else None, data_info, run_dir, cfg.override)
    if data_note:
        say(ctx, data_note)
    if ctx.is_main:
        if from_weights:
            say(ctx, keep_pretrained(run_dir))
        if saved is None and not from_weights:  # a new run: until its first state, its weights are not a run's
            atomic_write_text(run_dir / UNCOMMITTED, "a new training run started here and has not committed its "
                                                     "first training state yet\n")
        atomic_write_text(run_dir / "train_opt.txt", format_options(cfg.options))
        atomic_write_text(run_dir / "train_opt.json",
                          json.dumps(options_to_json_dict(cfg.options), indent=2, sort_keys=True) + "\n")
    return data_info


def _say_how_it_ended(ctx: DistContext, status: str, signal_name: str, state: TrainState, max_iters: int,
                      run_dir: Path) -> None:
    if status == "interrupted":
        say(ctx, f"stopped by {signal_name or 'a signal to another process'} at epoch {state.epoch}, iteration "
                 f"{state.epoch_iter}; the state is saved in {run_dir}: resume with the same command plus "
                 f"--continue_train")
    elif status == "stopped":
        say(ctx, f"stopped after --max_iters {max_iters} iterations; resume with --continue_train")
    else:
        say(ctx, f"training finished: {run_dir}")


def _print_configuration(cfg: TrainConfig, ctx: DistContext) -> None:
    say(ctx, "effective configuration (options that differ from the defaults):")
    for key, value in non_default_options(cfg.options).items():
        say(ctx, f"  --{key} {value}")
    if cfg.direction == "AtoB" and "cityscapes" in str(cfg.dataroot).lower():
        say(ctx, "note: --direction AtoB on Cityscapes trains photo->labels; labels->photo is --direction BtoA")
    if ctx.device.type == "cuda":  # autotuned convolutions, unless the user asked for reproducible kernels
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()


def _nothing_to_do(cfg: TrainConfig, ctx: DistContext, state: TrainState, run_dir: Path) -> TrainResult:
    """A resumed run that is already complete (all epochs) or already at ``--max_iters``: nothing is trained or
    written."""
    if state.epoch > cfg.total_epochs:
        say(ctx, f"{run_dir} has already finished its {cfg.total_epochs} epochs; raise --n_epochs or "
                 f"--n_epochs_decay to train longer")
        return TrainResult("finished", state.epoch, state.total_iters, run_dir, state.G, state.D)
    say(ctx, f"{run_dir} is already at --max_iters {cfg.max_iters} ({state.total_iters} iterations done); raise "
             f"--max_iters (or set it to 0) to train longer")
    return TrainResult("stopped", state.epoch, state.total_iters, run_dir, state.G, state.D)


class StopFlag:
    """Ctrl-C / SIGTERM -> ``requested``; the loop stops at the next iteration boundary (:attr:`stop`). A second
    Ctrl-C raises KeyboardInterrupt immediately. Handlers are installed only in the main thread and restored on exit.

    Under torchrun every rank must stop at the same iteration, and agreeing is a collective whose result the host
    reads; so the ranks agree (:meth:`agree`) only where the loop synchronises anyway, at log rows and epoch ends,
    and a signal to any rank stops them all at the next of those."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self.requested = False
        self.agreed = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    @property
    def stop(self) -> bool:
        """Stop now: this process was signalled, or (distributed) the ranks agreed that one of them was."""
        return self.agreed if self.ctx.distributed else self.requested

    def agree(self) -> None:
        if self.ctx.distributed:
            self.agreed = self.ctx.any(self.requested)

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def step_seed(seed: int, rank: int, total_iters: int) -> int:
    """The torch seed of one iteration: a hash of (seed, rank, iteration), so that dropout masks differ
    between ranks and iterations but are reproducible from the position alone."""
    digest = hashlib.blake2b(f"{seed}:{rank}:{total_iters}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def autocast_factory(amp: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """``--amp``: a zero-argument callable giving the autocast context (or a null context)."""
    if amp == "none":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def prepare_run_dir(run_dir: Path, continue_train: bool) -> str | None:
    """A run never writes into a folder holding another run's checkpoints without being told how: a new run
    refuses a folder with a training state or any network weights (a forgotten ``--continue_train``, a copied
    run, an official pretrained folder), naming what is there and the choices. A folder holding only the
    options, log or gallery of a run that saved nothing (e.g. one that diverged at once) is reused, and so are the
    weights of a new run killed before its first state (marked :data:`UNCOMMITTED`): they are removed, and the
    returned note says so."""
    if (run_dir / STATE_FILE).exists():
        if not continue_train:
            raise TrainingError(f"{run_dir} already holds a training run: add --continue_train to resume it, or "
                                f"choose another --name (or delete the folder to start over)")
        return None
    found = checkpoint_files(run_dir)
    if not found:
        return None
    if (run_dir / UNCOMMITTED).exists() and not continue_train:
        leftovers = [name for name in found if "/" not in name]
        for name in leftovers:
            (run_dir / name).unlink()
        return (f"removed {len(leftovers)} network file(s) of a run started in {run_dir} that was stopped before "
                f"saving its first training state")
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    if is_pretrained_folder(run_dir):
        if not continue_train:
            raise TrainingError(
                f"{run_dir} already holds another run's files ({shown}) but no training state: add "
                f"--continue_train to start a new run from its latest weights (everything there is first moved to "
                f"{run_dir / 'pretrained'}), or choose another --name (or delete the folder to start over)")
        return
    raise TrainingError(
        f"{run_dir} already holds another run's files ({shown}) but neither a training state nor latest_net_G.pth: "
        f"choose another --name (or delete the folder to start over); to start from one of those epochs, copy its "
        f"N_net_G.pth and N_net_D.pth to latest_net_G.pth and latest_net_D.pth and add --continue_train")


def _file_identities(run_dir: Path) -> dict[str, tuple[int, int]]:
    """``{name: (inode, mtime)}`` of :func:`checkpoint_files`: a file rewritten under its name is another file, a
    file renamed (into ``pretrained/``) the same one."""
    found = {}
    for name in checkpoint_files(run_dir):
        with contextlib.suppress(OSError):
            st = (run_dir / name).stat()
            found[name] = (st.st_ino, st.st_mtime_ns)
    return found


def remove_uncommitted_weights(run_dir: Path, found_before: dict[str, tuple[int, int]]) -> None:
    """A run that fails (diverges, fills the disk, is aborted) before committing its first training state removes
    the weights it wrote (an epoch's files, ``latest_*``, ``iter_*``): no checkpoint was saved, as its message
    says, and the same command then runs again in the folder instead of being refused as another run's. Called
    holding the lock; files that were there before the run are left alone; never raises."""
    if (run_dir / STATE_FILE).exists():
        return
    kept = set(found_before.values())  # by identity: files moved into pretrained/ are the same files
    for name, identity in _file_identities(run_dir).items():
        if identity not in kept:
            with contextlib.suppress(OSError):
                (run_dir / name).unlink()


def checkpoint_files(run_dir: Path) -> list[str]:
    """The names of the network and state files (``*.pth``) in ``run_dir`` and its ``pretrained/``."""
    if not run_dir.is_dir():
        return []
    found = sorted(p.name for p in run_dir.glob("*.pth"))
    pretrained = run_dir / "pretrained"
    return found + sorted(f"pretrained/{p.name}" for p in pretrained.glob("*.pth")) if pretrained.is_dir() \
        else found


def build_networks(cfg: TrainConfig | Namespace) -> tuple[nn.Module, nn.Module]:
    G = define_G(cfg.netG, cfg.input_nc, cfg.output_nc, cfg.ngf, norm=cfg.norm, use_dropout=not cfg.no_dropout,
                 init_type=cfg.init_type, init_gain=cfg.init_gain)
    D = define_D(cfg.netD, cfg.input_nc + cfg.output_nc, cfg.ndf, n_layers_D=cfg.n_layers_D, norm=cfg.norm,
                 init_type=cfg.init_type, init_gain=cfg.init_gain)
    return G, D


def describe_networks(G: nn.Module, D: nn.Module) -> str:
    """``--verbose``: both networks and their parameter counts (as the official pix2pix prints them)."""
    parts = ["---------- Networks initialized -------------"]
    for label, net in (("G", G), ("D", D)):
        parts += [str(net), f"[Network {label}] Total number of parameters : {count_parameters(net) / 1e6:.3f} M"]
    return "\n".join(parts + ["-----------------------------------------------"])


def build_optimizers(cfg: TrainConfig, G: nn.Module, D: nn.Module) -> tuple[Any, Any, Any, Any]:
    """``(opt_G, opt_D, sched_G, sched_D)``: one ``--optimizer`` and one ``--lr_policy`` schedule per network."""
    make_opt = partial(make_optimizer, cfg.optimizer, lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2,
                       tr_lambda=cfg.tr_lambda, tr_period=cfg.tr_period, tr_mode=cfg.tr_mode,
                       tr_inner_decay=not cfg.no_tr_inner_decay, fused=cfg.fused, compiled=cfg.compiled_optimizer)
    opt_G, opt_D = make_opt(G.parameters()), make_opt(D.parameters())
    make_sched = partial(make_scheduler, policy=cfg.lr_policy, n_epochs=cfg.n_epochs,
                         n_epochs_decay=cfg.n_epochs_decay, lr_decay_iters=cfg.lr_decay_iters)
    return opt_G, opt_D, make_sched(opt_G), make_sched(opt_D)


def build_scalers(cfg: TrainConfig, device: torch.device) -> tuple[torch.amp.GradScaler, torch.amp.GradScaler]:
    """One GradScaler per network, enabled with ``--amp fp16`` (a disabled scaler is a no-op)."""
    return (torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
            torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"))


def build_data(cfg: TrainConfig, ctx: DistContext):
    """The training set, its sampler (this rank's share) and the DataLoader; TrainingError for bad data."""
    from ..data import AlignedDataset, DatasetError, EpochSampler, make_dataloader, resolve_dataroot

    try:
        dataset = AlignedDataset(resolve_dataroot(cfg.dataroot), cfg.phase, direction=cfg.direction,
                                 preprocess=cfg.preprocess, load_size=cfg.load_size, crop_size=cfg.crop_size,
                                 no_flip=cfg.no_flip, max_dataset_size=cfg.max_dataset_size, seed=cfg.seed,
                                 input_nc=cfg.input_nc, output_nc=cfg.output_nc, cache_images=cfg.cache_images,
                                 augment_on_device=cfg.augment_on_device)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc
    problem = batch_shape_problem(dataset.paths, dataset.sizes, preprocess=cfg.preprocess, load_size=cfg.load_size,
                                  crop_size=cfg.crop_size, netG=cfg.netG, batch_size=cfg.batch_size)
    if problem:
        raise TrainingError(problem)
    if dataset.cache is not None:
        say(ctx, f"--cache_images: {len(dataset)} pairs decoded and resized once, "
                 f"{dataset.cache.nbytes / 2**20:.1f} MB of shared memory")
    sampler = EpochSampler(len(dataset), shuffle=not cfg.serial_batches, seed=cfg.seed, rank=ctx.rank,
                           world_size=ctx.world_size)
    pin = ctx.device.type == "cuda" and not cfg.no_pin_memory
    loader = make_dataloader(dataset, cfg.batch_size, sampler, num_workers=cfg.num_threads, pin_memory=pin,
                             seed=cfg.seed)
    return dataset, sampler, loader


def batch_shape_problem(paths, sizes, *, preprocess: str, load_size: int, crop_size: int, netG: str,
                        batch_size: int) -> str | None:
    """Why the training images cannot make batches the generator takes (one sentence naming a file), or None.
    Read off the files' headers (``sizes``: each A|B file's ``(w, h)``) before anything is trained: every sample's
    side must be a multiple of what ``netG`` needs (``--preprocess none`` / ``scale_width`` keep the images' own
    sizes), and a batch of several samples needs one size (the DataLoader stacks them)."""
    from ..data.aligned import resize_target
    from ..models.networks import required_multiple

    multiple = required_multiple(netG)
    first = None
    for path, (w, h) in zip(paths, sizes):
        half = (w // 2, h)
        out = (crop_size, crop_size) if preprocess in ("resize_and_crop", "crop", "scale_width_and_crop") else (
            resize_target(half, preprocess=preprocess, load_size=load_size, crop_size=crop_size) or half)
        if out[0] % multiple or out[1] % multiple:
            return (f"--netG {netG} needs image sides that are multiples of {multiple}, but with --preprocess "
                    f"{preprocess} the image {path} gives {out[0]}x{out[1]} halves: use --preprocess resize_and_crop "
                    f"(or scale_width_and_crop) with a --crop_size that is a multiple of {multiple}, resize the "
                    f"images, or choose another --netG")
        if first is None:
            first = (path, out)
        elif batch_size > 1 and out != first[1]:
            return (f"--batch_size {batch_size} stacks the samples of a batch into one tensor, but with --preprocess "
                    f"{preprocess} the image {first[0]} gives {first[1][0]}x{first[1][1]} halves and {path} "
                    f"{out[0]}x{out[1]}: use --batch_size 1, a --preprocess that crops (resize_and_crop, "
                    f"scale_width_and_crop, crop), or images of one size")
    return None


def wrap_for_training(G: nn.Module, D: nn.Module, ctx: DistContext, *, compile: bool, mode: str = "default"):
    """DDP wrappers under torchrun, then torch.compile. Returns ``(G_run, D_run, D_local)`` (see train_step)."""
    G_run, D_run, D_local = G, D, D
    if ctx.distributed:
        G_run, D_run = ddp_wrap(G, D, ctx)
    if compile:
        G_run, D_run = torch.compile(G_run, mode=mode), torch.compile(D_run, mode=mode)
        D_local = torch.compile(D, mode=mode) if ctx.distributed else D_run
    return G_run, D_run, D_local


def restart_tr_cycles(*optimizers: torch.optim.Optimizer) -> None:
    """``--tr_restart_each_epoch``: a new TR cycle (k = 0, new anchor) for each TR optimiser (others have none)."""
    for optimizer in optimizers:
        if hasattr(optimizer, "tr_restart"):
            optimizer.tr_restart()


def say(ctx: DistContext, *args: Any) -> None:
    if ctx.is_main:
        print(*args, flush=True)


def _data_dir(cfg: TrainConfig) -> Path | None:
    """The folder ``--dataroot`` resolves to (else None: building the dataset reports the problem)."""
    from ..data import DatasetError, resolve_dataroot

    try:
        return Path(resolve_dataroot(cfg.dataroot))
    except DatasetError:
        return None
