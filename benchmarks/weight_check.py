"""The divergence check of the training loop: what it costs, alone and per iteration, side by side in one process.

Two tables, default networks (unet_256 generator + 70x70 PatchGAN, ngf = ndf = 64: 57.2M floats in 88 weight and
buffer tensors), batch 1, 256x256, random inputs on the device:

1. *The weight check alone*, median of ``--repeats`` alternating runs:
   ``isfinite per tensor``, the previous release's check (:func:`pix2pix_tr.safe_load.nonfinite_entries`: one
   ``isfinite(t).all()`` per tensor, each allocating a bool tensor the size of ``t``, flags stacked, one transfer);
   ``sum per tensor`` (one ``t.sum()`` each, stacked, one transfer); and the loop's check now,
   :meth:`pix2pix_tr.training.checkpoint.Checkpointer.check` (the L2 norm of each tensor with the running loss sums,
   one transfer).
2. *Per iteration*, ``--print_freq 100`` against ``--print_freq 1``: the loop's iteration (the real pix2pix step,
   :class:`~pix2pix_tr.training.loss_log.LossMeter`, and at each log row the check and the log means), the two
   configurations alternating iteration by iteration so that a busy machine slows both alike; medians and means of
   the per-iteration wall times and their ratios, the ratio of paired neighbours, and the log-row part of an
   iteration timed on its own (the goal: ``--print_freq 1`` within 5% of ``--print_freq 100``). On a busy machine the
   whole-iteration ratios scatter by a few percent between runs; the log-row time is the steadier figure.

    python benchmarks/weight_check.py                      # both tables, default networks (~5 min on 2 cores)
    python benchmarks/weight_check.py --iters 0            # the weight check only (seconds)
    python benchmarks/weight_check.py --ngf 8 --ndf 8 --netG unet_64 --size 64   # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pix2pix_tr.models import GANLoss, define_D, define_G, required_multiple  # noqa: E402
from pix2pix_tr.models.pix2pix import train_step  # noqa: E402
from pix2pix_tr.optim import TRAdam  # noqa: E402
from pix2pix_tr.safe_load import nonfinite_entries  # noqa: E402
from pix2pix_tr.training import Checkpointer, TrainState  # noqa: E402
from pix2pix_tr.training.guards import finite_check_tensors  # noqa: E402


def build(device: torch.device, netG: str, ngf: int, ndf: int, size: int, batch_size: int, run_dir: Path):
    """A TrainState of fresh networks with TRAdam (the loop's default), a Checkpointer, and a batch."""
    torch.manual_seed(0)
    G, D = define_G(netG, ngf=ngf).to(device), define_D("basic", ndf=ndf).to(device)
    hp = dict(lr=2e-4, betas=(0.5, 0.999))
    opt_G, opt_D = TRAdam(G.parameters(), **hp), TRAdam(D.parameters(), **hp)
    sched = [torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0) for o in (opt_G, opt_D)]
    scalers = [torch.amp.GradScaler(device.type, enabled=False) for _ in range(2)]
    state = TrainState(G, D, opt_G, opt_D, *sched, *scalers, options={}, data={}, world_size=1,
                       batch_size=batch_size)
    gen = torch.Generator().manual_seed(1)
    A, B = ((torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device) for _ in range(2))
    return state, Checkpointer(run_dir, is_main=False, lr=2e-4), (A, B)


def old_check(state: TrainState) -> list[str]:
    return nonfinite_entries({"G": state.G.state_dict(), "D": state.D.state_dict()})


def sum_check(state: TrainState) -> list[float]:
    _, tensors = finite_check_tensors({"G": state.G, "D": state.D})
    return torch.stack([t.sum().float() for t in tensors]).tolist()


def new_check(state: TrainState, checkpointer: Checkpointer) -> None:
    checkpointer._checked_at = None  # force a check at this position (the loop never checks one twice)
    checkpointer.check(state)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=15, help="runs of each weight check")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per --print_freq setting (0: none)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--netG", default="unet_256")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.size % required_multiple(args.netG):
        p.error(f"--size {args.size}: --netG {args.netG} needs a multiple of {required_multiple(args.netG)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    state, checkpointer, (A, B) = build(device, args.netG, args.ngf, args.ndf, args.size, args.batch_size,
                                        Path("unused"))
    gan_loss = GANLoss("vanilla").to(device)

    def iteration() -> None:
        losses, _ = train_step(state.G, state.D, state.opt_G, state.opt_D, A, B, gan_loss=gan_loss)
        state.advance()
        state.meter.add(losses)

    iteration()  # the meter and the optimisers' state exist from here on
    names, tensors = finite_check_tensors({"G": state.G, "D": state.D})
    floats = sum(t.numel() for t in tensors)
    head = (f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, {args.netG} + basic D, "
            f"ngf {args.ngf} ndf {args.ndf}: {floats / 1e6:.1f}M floats in {len(tensors)} weight/buffer tensors")
    print(head, flush=True)

    # 1. the weight check alone
    checks = {"isfinite per tensor (previous release)": lambda: old_check(state),
              "sum per tensor, one transfer": lambda: sum_check(state),
              "Checkpointer.check (norm per tensor + loss sums, one transfer)": lambda: new_check(state, checkpointer)}
    times = {name: [] for name in checks}
    for fn in checks.values():
        fn()
    for _ in range(args.repeats):
        for name, fn in checks.items():
            sync()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(next(iter(times.values())))
    print(f"\n{'weight check':<66}{'median s':>10}{'min s':>9}{'vs previous':>13}")
    check_rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        check_rows[name] = dict(median_s=med, min_s=min(ts), ratio=med / base)
        print(f"{name:<66}{med:>10.4f}{min(ts):>9.4f}{med / base:>12.3f}x")
    result = dict(header=head, floats=floats, tensors=len(tensors), repeats=args.repeats, weight_check=check_rows)

    # 2. per iteration: --print_freq 100 against --print_freq 1, alternating
    if args.iters:
        for _ in range(args.warmup):
            iteration()
        per_iter: dict[int, list[float]] = {100: [], 1: []}
        log_work: dict[int, list[float]] = {100: [], 1: []}  # the log-row part of each iteration (0 when none)
        counters = {100: 0, 1: 0}
        for _ in range(args.iters):
            for freq in (100, 1):
                sync()
                t = time.perf_counter()
                iteration()
                counters[freq] += 1
                t_log = time.perf_counter()
                if counters[freq] % freq == 0:  # the loop's log row: check, then the log means
                    checkpointer.check(state)
                    state.meter.take_window()
                sync()
                end = time.perf_counter()
                per_iter[freq].append(end - t)
                log_work[freq].append(end - t_log)
        ref_med, ref_mean = statistics.median(per_iter[100]), statistics.mean(per_iter[100])
        print(f"\n{'per iteration':<20}{'median s':>10}{'mean s':>10}{'ratio (median)':>16}{'ratio (mean)':>14}"
              f"{'paired ratio':>14}{'log-row s':>11}{'ratio from it':>15}")
        iter_rows = {}
        for freq, ts in per_iter.items():
            med, mean = statistics.median(ts), statistics.mean(ts)
            paired = 1 + statistics.median(a - b for a, b in zip(ts, per_iter[100])) / ref_med
            work = statistics.median(log_work[freq])
            from_work = 1 + (work - statistics.median(log_work[100])) / ref_med
            iter_rows[f"print_freq_{freq}"] = dict(median_s=med, mean_s=mean, ratio_median=med / ref_med,
                                                   ratio_mean=mean / ref_mean, ratio_paired=paired,
                                                   log_row_s=work, ratio_from_log_row=from_work, iterations=len(ts))
            print(f"{'--print_freq ' + str(freq):<20}{med:>10.4f}{mean:>10.4f}{med / ref_med:>15.3f}x"
                  f"{mean / ref_mean:>13.3f}x{paired:>13.3f}x{work:>11.4f}{from_work:>14.3f}x")
        print(f"\n{args.iters} iterations per setting, alternating; the --print_freq 1 iterations each include a "
              f"check and a log row's means. paired ratio: 1 + the median difference of consecutive iterations of "
              f"the two settings over the --print_freq 100 median; log-row s: the median time of the log-row part "
              f"of an iteration (the check and the means), measured inside it; ratio from it: 1 + its excess over "
              f"the --print_freq 100 iterations' (no log row) / their median iteration.")
        result["per_iteration"] = iter_rows
    if args.json:
        from pix2pix_tr.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
