"""The training loop of train.py: pix2pix with one optimiser per network, resumable, observable, distributed.

Read :func:`train` top to bottom: it builds everything (data, networks, optimisers, schedules, scalers),
restores a saved state with ``--continue_train``, and runs epochs of :func:`pix2pix_tr.models.pix2pix.train_step`.
Every side effect has a named helper: ``save_checkpoint`` and ``log_row`` (closures inside :func:`train`), the
end-of-epoch block (schedules, per-epoch files, gallery, loss plot), :class:`~pix2pix_tr.training.loss_log.LossLog`
and, with ``--tensorboard``, :class:`~pix2pix_tr.training.tensorboard.TensorBoardLog`.

Exact resume. Everything random in an iteration is fixed by its position: the data order and crop/flip come
from ``(seed, epoch, index)`` (:mod:`pix2pix_tr.data`), and the global torch RNG (dropout, the WGAN-GP
interpolation) is reseeded before every iteration from ``(seed, rank, total_iters)``. Together with the
networks, the optimisers (TR step counters and anchors included), the schedules, the scalers and the
running loss sums in ``training_state.pth``, a resumed run repeats exactly what the uninterrupted run
would have done (on CPU; CUDA kernels may be non-deterministic).

Stopping. Ctrl-C or SIGTERM sets a flag; the loop finishes the current iteration, saves the latest state
(mid-epoch if need be) and returns ``status="interrupted"`` (a second Ctrl-C aborts at once). ``--max_iters``
stops the same way. A NaN/inf loss raises :class:`TrainingDiverged` before the bad update, without saving:
the last checkpoint on disk is the last good one. Weights and buffers are checked too (every ``--print_freq``
iterations and before every save), since they can run off to inf while the losses stay finite.

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
import sys
import threading
import time
from argparse import Namespace
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..io import atomic_write_text, is_no_space
from ..paths import PathError, check_no_overlap, ensure_writable_dir, join_name
from ..models import GANLoss, define_D, define_G
from ..models.pix2pix import NonFiniteLossError, train_step
from ..options import format_options, non_default_options, options_to_json_dict
from .checkpoint import (STATE_FILE, check_resume_options, load_training_state, restore_rng_state,
                         rng_state, save_networks, save_training_state)
from .distributed import DistContext, ddp_wrap, init_distributed
from .errors import NoSpaceLeft, TrainingDiverged, TrainingError
from .guards import (apply_overrides, check_finite_networks, check_resume_data, data_fingerprint,
                     no_space_message, remove_orphan_tmp, tensor_bytes)
from .lock import LOCK_FILE, RunLock
from .loss_log import LossLog, LossMeter
from .pretrained import is_pretrained_folder, keep_pretrained, load_pretrained
from .tensorboard import TensorBoardLog
from .optimizers import make_optimizer, make_scheduler, step_scheduler

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


@dataclass
class TrainResult:
    """What :func:`train` returns: how it ended, where, and the trained (unwrapped) networks."""

    status: str  # "finished", "interrupted" (signal) or "stopped" (--max_iters)
    epoch: int  # the epoch the next run would start (or continue)
    total_iters: int
    run_dir: Path
    G: nn.Module | None = field(default=None, repr=False)
    D: nn.Module | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------------
# small helpers


class StopFlag:
    """Ctrl-C / SIGTERM -> ``requested``; the loop stops at the next iteration boundary. A second Ctrl-C
    raises KeyboardInterrupt immediately. Handlers are installed only in the main thread and restored on exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

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


def prepare_run_dir(run_dir: Path, continue_train: bool) -> None:
    """A new run refuses a folder that already holds a training state (so days of training are not
    overwritten by a forgotten ``--continue_train``)."""
    if not continue_train and (run_dir / STATE_FILE).exists():
        raise TrainingError(f"{run_dir} already holds a training run: add --continue_train to resume it, or "
                            f"choose another --name (or delete the folder to start over)")


def build_networks(opt: Namespace) -> tuple[nn.Module, nn.Module]:
    G = define_G(opt.netG, opt.input_nc, opt.output_nc, opt.ngf, norm=opt.norm, use_dropout=not opt.no_dropout,
                 init_type=opt.init_type, init_gain=opt.init_gain)
    D = define_D(opt.netD, opt.input_nc + opt.output_nc, opt.ndf, n_layers_D=opt.n_layers_D, norm=opt.norm,
                 init_type=opt.init_type, init_gain=opt.init_gain)
    return G, D


def build_data(opt: Namespace, ctx: DistContext):
    """The training set, its sampler (this rank's share) and the DataLoader."""
    from ..data import AlignedDataset, EpochSampler, make_dataloader, resolve_dataroot

    root = resolve_dataroot(opt.dataroot)
    dataset = AlignedDataset(root, opt.phase, direction=opt.direction, preprocess=opt.preprocess,
                             load_size=opt.load_size, crop_size=opt.crop_size, no_flip=opt.no_flip,
                             max_dataset_size=opt.max_dataset_size, seed=opt.seed, input_nc=opt.input_nc,
                             output_nc=opt.output_nc, cache_images=getattr(opt, "cache_images", False),
                             augment_on_device=getattr(opt, "augment_on_device", False))
    sampler = EpochSampler(len(dataset), shuffle=True, seed=opt.seed, rank=ctx.rank, world_size=ctx.world_size)
    pin = ctx.device.type == "cuda" and not opt.no_pin_memory
    loader = make_dataloader(dataset, opt.batch_size, sampler, num_workers=opt.num_threads, pin_memory=pin,
                             seed=opt.seed)
    return dataset, sampler, loader


def wrap_for_training(G: nn.Module, D: nn.Module, ctx: DistContext, *, compile: bool, mode: str = "default"):
    """DDP wrappers under torchrun, then torch.compile. Returns ``(G_run, D_run, D_local)`` (see train_step)."""
    G_run, D_run, D_local = G, D, D
    if ctx.distributed:
        G_run, D_run = ddp_wrap(G, D, ctx)
    if compile:
        G_run, D_run = torch.compile(G_run, mode=mode), torch.compile(D_run, mode=mode)
        D_local = torch.compile(D, mode=mode) if ctx.distributed else D_run
    return G_run, D_run, D_local


def say(ctx: DistContext, *args: Any) -> None:
    if ctx.is_main:
        print(*args, flush=True)


# ----------------------------------------------------------------------------------------------------
# the loop


def train(opt: Namespace, *, after_iteration: Callable[[int], None] | None = None) -> TrainResult:
    """Train pix2pix with the options of :func:`pix2pix_tr.options.parse_train`. Under torchrun, every rank
    calls this. ``after_iteration(total_iters)`` is a hook for tests and tools (called on every rank)."""
    ctx = init_distributed(opt.device)
    lock = None
    try:
        try:
            run_dir = join_name(ensure_writable_dir(opt.checkpoints_dir, flag="--checkpoints_dir"), opt.name)
            check_no_overlap(run_dir, {"the training folder": _data_dir(opt)}, output_flag="--checkpoints_dir/--name")
            if run_dir.exists():
                ensure_writable_dir(run_dir, flag="--name")
        except PathError as exc:
            raise TrainingError(str(exc)) from exc
        created = not run_dir.exists()
        if ctx.is_main:
            lock = RunLock(run_dir).acquire()
        try:
            return _train(opt, ctx, after_iteration)
        except (OSError, RuntimeError) as exc:  # a full disk before the loop (the loop reports its own)
            if isinstance(exc, TrainingError) or not is_no_space(exc):
                raise
            raise NoSpaceLeft(no_space_message(exc, run_dir, None, resumable=(run_dir / STATE_FILE).is_file())
                              ) from exc
        finally:
            if created and lock is not None and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
                (run_dir / LOCK_FILE).unlink()  # a run that failed its checks leaves no folder behind
                run_dir.rmdir()
    finally:
        if lock is not None:
            lock.release()
        ctx.close()


def _train(opt: Namespace, ctx: DistContext, after_iteration) -> TrainResult:
    from ..data import DatasetError

    device = ctx.device
    run_dir = Path(opt.checkpoints_dir) / opt.name
    if ctx.is_main:
        orphans = remove_orphan_tmp(run_dir)  # we hold the lock: these are from a killed save
        if orphans:
            say(ctx, f"removed {len(orphans)} temporary file(s) left by an interrupted save in {run_dir}")
    prepare_run_dir(run_dir, opt.continue_train)
    if opt.norm == "syncbatch" and ctx.distributed and device.type != "cuda":
        raise TrainingError("--norm syncbatch synchronises batch statistics between GPUs and needs CUDA; on CPU "
                            "use --norm batch (or instance)")
    from_weights = opt.continue_train and is_pretrained_folder(run_dir)  # e.g. an official pix2pix folder
    state = load_training_state(run_dir) if opt.continue_train and not from_weights else None
    if state is not None:
        check_resume_options(state["options"], options_to_json_dict(opt), run_dir, overrides=opt.override)

    # -- what the run is
    say(ctx, "effective configuration (options that differ from the defaults):")
    for key, value in non_default_options(opt).items():
        say(ctx, f"  --{key} {value}")
    if device.type == "cuda":  # autotuned convolutions, unless the user asked for reproducible kernels
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()

    # -- data, networks, optimisers
    try:
        dataset, sampler, loader = build_data(opt, ctx)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc
    if dataset.cache is not None:
        say(ctx, f"--cache_images: {len(dataset)} pairs decoded and resized once, "
                 f"{dataset.cache.nbytes / 2**20:.1f} MB of shared memory")
    data_info = {**data_fingerprint(dataset.dir, dataset.paths), "dataroot": str(opt.dataroot)}
    data_note = check_resume_data(state.get("data") if state is not None else None, data_info, run_dir,
                                  opt.override)
    if data_note:
        say(ctx, data_note)
    if from_weights and ctx.is_main:
        say(ctx, keep_pretrained(run_dir))
    if ctx.is_main:  # after the data checks, so a typo in --dataroot leaves no folder behind
        atomic_write_text(run_dir / "train_opt.txt", format_options(opt))
        atomic_write_text(run_dir / "train_opt.json",
                          json.dumps(options_to_json_dict(opt), indent=2, sort_keys=True) + "\n")
    if opt.direction == "AtoB" and "cityscapes" in str(opt.dataroot).lower():
        say(ctx, "note: --direction AtoB on Cityscapes trains photo->labels; labels->photo is --direction BtoA")
    torch.manual_seed(opt.seed)  # the initial weights: identical on every rank
    G, D = build_networks(opt)
    if from_weights:
        ctx.barrier()  # rank 0 has moved the weights into pretrained/
        say(ctx, load_pretrained(run_dir, G, D, opt))
    if state is not None:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
    memory_format = torch.channels_last if opt.channels_last else torch.contiguous_format
    G.to(device, memory_format=memory_format)
    D.to(device, memory_format=memory_format)
    G.train()
    D.train()
    make_opt = partial(make_optimizer, opt.optimizer, lr=opt.lr, beta1=opt.beta1, beta2=opt.beta2,
                       tr_lambda=opt.tr_lambda, tr_period=opt.tr_period, tr_mode=opt.tr_mode,
                       tr_inner_decay=not opt.no_tr_inner_decay, fused=opt.fused,
                       compiled=getattr(opt, "compiled_optimizer", False))
    opt_G, opt_D = make_opt(G.parameters()), make_opt(D.parameters())
    make_sched = partial(make_scheduler, policy=opt.lr_policy, n_epochs=opt.n_epochs,
                         n_epochs_decay=opt.n_epochs_decay, lr_decay_iters=opt.lr_decay_iters)
    sched_G, sched_D = make_sched(opt_G), make_sched(opt_D)
    scaler_G = torch.amp.GradScaler(device.type, enabled=opt.amp == "fp16")
    scaler_D = torch.amp.GradScaler(device.type, enabled=opt.amp == "fp16")
    meter = LossMeter()
    epoch, epoch_iter, total_iters = 1, 0, 0
    override_notes: list[str] = []
    if state is not None:
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        sched_G.load_state_dict(state["sched_G"])
        sched_D.load_state_dict(state["sched_D"])
        for scaler, saved in ((scaler_G, state["scaler_G"]), (scaler_D, state["scaler_D"])):
            if saved:  # empty when the run was saved without --amp fp16: the fresh scaler starts over
                scaler.load_state_dict(saved)
        meter.load_state_dict(state["meter"])
        epoch, epoch_iter, total_iters = int(state["epoch"]), int(state["epoch_iter"]), int(state["total_iters"])
        if epoch_iter and (state.get("world_size") != ctx.world_size or state.get("batch_size") != opt.batch_size):
            raise TrainingError(
                f"--continue_train: the run stopped in the middle of epoch {epoch} with --batch_size "
                f"{state.get('batch_size')} on {state.get('world_size')} process(es); resume it with the same "
                f"--batch_size and number of processes (they may change at an epoch boundary)")
        restore_rng_state(state.get("rng", {}))
        override_notes = apply_overrides(opt.override, state["options"], opt, (opt_G, opt_D), (sched_G, sched_D))
        for note in override_notes:
            say(ctx, f"--override: {note}")
        say(ctx, f"resuming {run_dir} at epoch {epoch}, iteration {epoch_iter} of the epoch "
                 f"({total_iters} iterations done)")
    G_run, D_run, D_local = wrap_for_training(G, D, ctx, compile=opt.compile, mode=opt.compile_mode)
    cuda_graphs = opt.compile and opt.compile_mode == "reduce-overhead" and device.type == "cuda"
    gan_loss = GANLoss(opt.gan_mode).to(device)
    autocast = autocast_factory(opt.amp, device)
    agree = ctx.any if ctx.distributed else None

    # -- observers (rank 0 only)
    columns = ["epoch", "epoch_iter", "total_iters", *LOSS_NAMES, *(["D_gp"] if opt.gan_mode == "wgangp" else []),
               "lr_G", "lr_D", "time", "note"]
    log = LossLog(run_dir / "loss_log.csv", columns, resume_at=total_iters if state is not None else None) \
        if ctx.is_main else None
    gallery = None
    if ctx.is_main:
        from ..report.training_page import TrainingGallery
        gallery = TrainingGallery(run_dir / "web", title=f"pix2pix-TR training: {opt.name}",
                                  reset=state is None)
    tb = TensorBoardLog(run_dir) if ctx.is_main and opt.tensorboard else None

    total_epochs = opt.n_epochs + opt.n_epochs_decay
    batches_per_epoch = math.ceil(sampler.num_samples / opt.batch_size)
    t0 = time.time()
    last_saved = total_iters if state is not None else None
    visuals: dict[str, torch.Tensor] = {}

    def current_position_state(ep: int, ep_iter: int) -> dict[str, Any]:
        return {"epoch": ep, "epoch_iter": ep_iter, "total_iters": total_iters, "G": G.state_dict(),
                "D": D.state_dict(), "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                "sched_G": sched_G.state_dict(), "sched_D": sched_D.state_dict(),
                "scaler_G": scaler_G.state_dict(), "scaler_D": scaler_D.state_dict(), "meter": meter.state_dict(),
                "rng": rng_state(), "options": options_to_json_dict(opt), "world_size": ctx.world_size,
                "batch_size": opt.batch_size, "data": data_info,
                "overrides": [*(state or {}).get("overrides", []),
                              *({"total_iters": state["total_iters"], "note": n} for n in override_notes)]}

    finite_at: int | None = None  # total_iters of the last passed check; the weights only change in a step

    def check_finite(ep: int, ep_iter: int) -> None:
        """Weights and buffers finite, or TrainingDiverged before anything is saved (once per iteration count:
        an epoch end checks before its epoch files, and the save right after needs no second pass)."""
        nonlocal finite_at
        if finite_at == total_iters:
            return
        check_finite_networks({"G": G, "D": D}, f"by epoch {ep}, iteration {ep_iter} of the epoch ({total_iters} "
                              f"in total)", _kept_advice(run_dir, last_saved, opt.lr))
        finite_at = total_iters

    def save_checkpoint(ep: int, ep_iter: int) -> None:
        nonlocal last_saved
        check_finite(ep, ep_iter)
        if ctx.is_main:
            save_networks(run_dir, "latest", G, D)
            save_training_state(run_dir, current_position_state(ep, ep_iter))  # last: it commits the save
        last_saved = total_iters

    pending_notes = list(override_notes)

    def log_row(ep: int, ep_iter: int) -> None:
        means = meter.take_window()
        if log is not None and means:
            row = {"epoch": ep, "epoch_iter": ep_iter, "total_iters": total_iters, **means,
                   "lr_G": opt_G.param_groups[0]["lr"], "lr_D": opt_D.param_groups[0]["lr"],
                   "time": round(time.time() - t0, 3), "note": "; ".join(pending_notes)}
            log.append(row)
            pending_notes.clear()
            if tb is not None:
                tb.add_row(row)

    if epoch > total_epochs:
        say(ctx, f"{run_dir} has already finished its {total_epochs} epochs; raise --n_epochs or --n_epochs_decay "
                 f"to train longer")
        return TrainResult("finished", epoch, total_iters, run_dir, G, D)

    status = "finished"
    bar = None
    with StopFlag() as stop_flag:
        try:
            while epoch <= total_epochs:
                sampler.set_epoch(epoch, start=min(epoch_iter * opt.batch_size, sampler.num_samples))
                if getattr(opt, "tr_restart_each_epoch", False) and epoch_iter == 0:
                    for o in (opt_G, opt_D):
                        getattr(o, "tr_restart", lambda: None)()  # TR optimizers only
                bar = _progress_bar(ctx, epoch, total_epochs, epoch_iter, batches_per_epoch)
                stop = False
                for batch in loader:
                    torch.manual_seed(step_seed(opt.seed, ctx.rank, total_iters))
                    ctx.sync_buffers(D)  # rank 0's BatchNorm statistics, before any forward saves them
                    if cuda_graphs:  # a new iteration: the previous one's graph outputs may be overwritten
                        torch.compiler.cudagraph_mark_step_begin()
                    real_A, real_B = dataset.to_device(batch, device, memory_format)
                    try:
                        losses, fake_B = train_step(G_run, D_run, opt_G, opt_D, real_A, real_B, gan_loss=gan_loss,
                                                    lambda_L1=opt.lambda_L1, lambda_gp=opt.lambda_gp,
                                                    D_local=D_local, scaler_G=scaler_G, scaler_D=scaler_D,
                                                    autocast=autocast, agree=agree)
                    except NonFiniteLossError as exc:
                        raise TrainingDiverged(_diverged_message(exc, epoch, epoch_iter + 1, total_iters + 1,
                                                                 run_dir, last_saved, opt.lr)) from exc
                    epoch_iter += 1
                    total_iters += 1
                    meter.add(losses)
                    if bar is not None:
                        bar.update(1)
                        if total_iters % opt.display_freq == 0 or epoch_iter == 1:
                            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                    if total_iters % opt.print_freq == 0:
                        check_finite(epoch, epoch_iter)
                        log_row(epoch, epoch_iter)
                    if after_iteration is not None:
                        after_iteration(total_iters)
                    visuals = {"real_A": real_A, "fake_B": fake_B, "real_B": real_B}  # the gallery shows the last
                    stop = stop_flag.requested or bool(opt.max_iters and total_iters >= opt.max_iters)
                    if ctx.distributed:
                        stop = ctx.any(stop)
                    if stop:
                        break
                    if opt.save_latest_freq and total_iters % opt.save_latest_freq == 0 \
                            and epoch_iter < batches_per_epoch:
                        save_checkpoint(epoch, epoch_iter)
                if bar is not None:
                    bar.close()
                    bar = None
                if stop and epoch_iter < batches_per_epoch:
                    save_checkpoint(epoch, epoch_iter)  # mid-epoch
                    status = "interrupted" if stop_flag.requested else "stopped"
                    break
                # -- end of epoch: log, schedules, files, gallery
                log_row(epoch, epoch_iter)
                metric = ctx.mean(meter.take_epoch_G())
                step_scheduler(sched_G, metric)
                step_scheduler(sched_D, metric)
                last_visuals = {k: v[:1].detach().float().cpu().contiguous() for k, v in visuals.items()}
                visuals = {}
                finished_epoch = epoch
                check_finite(finished_epoch, epoch_iter)
                # the epoch's own files first, the state last: a kill in between redoes this epoch end
                if ctx.is_main and (finished_epoch % opt.save_epoch_freq == 0 or finished_epoch == total_epochs):
                    save_networks(run_dir, finished_epoch, G, D)
                    gallery.add_epoch(finished_epoch, last_visuals,
                                      info={"total_iters": total_iters, "lr_G": f"{opt_G.param_groups[0]['lr']:.3g}"})
                    if tb is not None:
                        tb.add_visuals(finished_epoch, total_iters, last_visuals)
                epoch, epoch_iter = epoch + 1, 0
                save_checkpoint(epoch, 0)
                if ctx.is_main:
                    _plot(run_dir)
                    print(f"end of epoch {finished_epoch}/{total_epochs}: {total_iters} iterations, "
                          f"{time.time() - t0:.0f} s, lr {opt_G.param_groups[0]['lr']:.3g}", flush=True)
                if stop:
                    status = "interrupted" if stop_flag.requested else "stopped"
                    break
        except DatasetError as exc:  # a file went bad during training: the last saved state is kept
            if (run_dir / STATE_FILE).is_file():
                then = (f"the last saved state in {run_dir} is kept; fix the file and resume with the same command "
                        f"plus --continue_train")
            else:
                then = "nothing had been saved yet; fix the file and run the same command again"
            raise TrainingError(f"{exc} ({then})") from exc
        except Exception as exc:
            if not is_no_space(exc):
                raise
            needed = 3 * tensor_bytes([G.state_dict(), D.state_dict()]) + tensor_bytes(
                [opt_G.state_dict(), opt_D.state_dict()])
            raise NoSpaceLeft(no_space_message(exc, run_dir, needed, resumable=(run_dir / STATE_FILE).is_file())
                              ) from exc
        finally:
            if bar is not None:
                bar.close()
            if tb is not None:
                tb.close()
    if status == "interrupted":
        say(ctx, f"stopped by {stop_flag.signal_name} at epoch {epoch}, iteration {epoch_iter}; the state is saved "
                 f"in {run_dir}: resume with the same command plus --continue_train")
    elif status == "stopped":
        say(ctx, f"stopped after --max_iters {opt.max_iters} iterations; resume with --continue_train")
    else:
        say(ctx, f"training finished: {run_dir}")
    ctx.barrier()
    return TrainResult(status, epoch, total_iters, run_dir, G, D)


def _data_dir(opt: Namespace) -> Path | None:
    """``DATAROOT/PHASE`` when --dataroot resolves (else None: building the dataset reports the problem)."""
    from ..data import DatasetError, resolve_dataroot

    try:
        return Path(resolve_dataroot(opt.dataroot)) / opt.phase
    except DatasetError:
        return None


def _progress_bar(ctx: DistContext, epoch: int, total_epochs: int, done: int, total: int):
    if not ctx.is_main:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch}/{total_epochs}", unit="it", dynamic_ncols=True,
                leave=False, file=sys.stderr, mininterval=1.0)


def _plot(run_dir: Path) -> None:
    from ..report.plots import plot_losses

    csv_path = run_dir / "loss_log.csv"
    if csv_path.is_file():
        try:
            plot_losses(csv_path, run_dir / "loss_curve.png")
        except Exception as exc:  # a plot must never stop days of training
            print(f"warning: could not draw {run_dir / 'loss_curve.png'} ({type(exc).__name__}: {exc})",
                  file=sys.stderr)


def _kept_advice(run_dir: Path, last_saved: int | None, lr: float) -> str:
    """What is on disk after a divergence and the command that goes on from there (each one tested)."""
    lower = f"{lr / 10:g}"
    if last_saved is None and not (run_dir / STATE_FILE).is_file():
        return (f"no checkpoint had been saved yet: run the same command again with a lower learning rate, e.g. "
                f"--lr {lower} (or --amp none/bf16 instead of fp16, or check the data)")
    after = f", saved after {last_saved} iterations," if last_saved is not None else ""
    return (f"the last good checkpoint{after} is kept in {run_dir}: resume it with a lower learning rate by adding "
            f"--continue_train --override lr --lr {lower} to the same command (or --amp none/bf16 instead of fp16, "
            f"or check the data)")


def _diverged_message(exc: NonFiniteLossError, epoch: int, epoch_iter: int, total_iters: int, run_dir: Path,
                      last_saved: int | None, lr: float = 2e-4) -> str:
    where = f"at epoch {epoch}, iteration {epoch_iter} of the epoch ({total_iters} in total)"
    return (f"{exc} {where}, so training stopped before that update; "
            f"{_kept_advice(run_dir, last_saved, lr)}")
