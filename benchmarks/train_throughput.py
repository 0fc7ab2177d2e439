"""Seconds per pix2pix training iteration: the original recipe against ours, side by side in one run.

Full-size networks (unet_256 generator, 70x70 PatchGAN, ngf = ndf = 64, batch norm), batch 1, 256x256 inputs,
the real pix2pix step (:func:`pix2pix_tr.models.pix2pix.train_step`) on random tensors (data loading excluded:
with DataLoader workers it overlaps the step). Configurations:

* ``original``  torch.optim.Adam with its default implementation (the for-loop on CPU, foreach on CUDA),
                fp32, eager, contiguous tensors: what the original pix2pix runs;
* ``tradam``    TRAdam (lambda 0.1, S 10) with its fast path (torch's fused Adam kernel), fp32, eager;
* ``tradam+cl`` ... plus channels_last;
* ``tradam+bf16`` / ``tradam+cl+bf16``  ... plus bf16 autocast (by default on CUDA only; ``--bf16`` on CPUs
                with native bf16);
* ``tradam+compile`` (CPU) / ``tradam+cl+bf16+compile``  ... plus torch.compile (only with ``--compile``: compiling takes minutes).

Every configuration gets identical initial weights. The configurations run round-robin, ``--iters``
iterations each per round, for ``--repeats`` rounds, so slow phases of a busy machine hit all of them; the
table shows medians over all timed iterations, the median time of the generator's optimiser step, and the
ratio to ``original`` (lower is better). Ratios, not absolute times, are what to compare across machines.

    python benchmarks/train_throughput.py --iters 5 --repeats 3          # CPU, a few minutes
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --threads 1  # the most stable ratios on a busy CPU

On a busy machine, multi-threaded CPU runs are noisy in wall time *and* in CPU time (OpenMP threads spin while a
sibling is descheduled); one thread gives the most reproducible ratios (the optimiser step and the convolutions
scale alike with threads, so the ratio changes little).
    python benchmarks/train_throughput.py --device cuda --iters 20 --repeats 5 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pix2pix_tr.models import GANLoss, define_D, define_G  # noqa: E402
from pix2pix_tr.models.pix2pix import train_step  # noqa: E402
from pix2pix_tr.optim import TRAdam  # noqa: E402


def build(config: dict, device: torch.device, size: int, ngf: int, ndf: int, seed: int):
    torch.manual_seed(seed)
    G = define_G("unet_256", ngf=ngf).to(device)
    D = define_D("basic", ndf=ndf).to(device)
    if config["channels_last"]:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if config["optimizer"] == "adam":  # the original recipe: pix2pix's hyper-parameters, torch's defaults
        opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    else:
        opt_G = TRAdam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), tr_lambda=0.1, tr_period=10)
        opt_D = TRAdam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), tr_lambda=0.1, tr_period=10)
    G_run, D_run = (torch.compile(G), torch.compile(D)) if config["compile"] else (G, D)
    autocast = (partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16) if config["bf16"]
                else contextlib.nullcontext)
    gen = torch.Generator().manual_seed(seed + 1)
    mf = torch.channels_last if config["channels_last"] else torch.contiguous_format
    A = (torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(device, memory_format=mf)
    B = (torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(device, memory_format=mf)
    step_times: list[float] = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    original_step = opt_G.step

    def timed_step(*args, **kwargs):  # the generator optimiser's share of the iteration
        sync()
        t = time.perf_counter()
        out = original_step(*args, **kwargs)
        sync()
        step_times.append(time.perf_counter() - t)
        return out

    opt_G.step = timed_step
    gan_loss = GANLoss("vanilla").to(device)

    def one_iteration() -> tuple[float, float]:
        sync()
        t, c = time.perf_counter(), time.process_time()
        train_step(G_run, D_run, opt_G, opt_D, A, B, gan_loss=gan_loss, lambda_L1=100.0, D_local=D_run,
                   autocast=autocast)
        sync()
        return time.perf_counter() - t, time.process_time() - c

    return one_iteration, step_times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per configuration per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds (configurations alternate within a round)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations per configuration before timing")
    p.add_argument("--size", type=int, default=256, help="image side (multiple of 256 for unet_256)")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="also time bf16 autocast (default: on CUDA only; CPUs without native bf16, e.g. AVX2-only, "
                        "emulate it and are many times slower)")
    p.add_argument("--only", default="", help="comma-separated configuration names to run (default: all)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = dict(optimizer="tradam", channels_last=False, bf16=False, compile=False)
    configs = {
        "original": dict(base, optimizer="adam"),
        "tradam": dict(base),
        "tradam+cl": dict(base, channels_last=True),
    }
    bf16 = args.bf16 if args.bf16 is not None else device.type == "cuda"
    if bf16:
        configs["tradam+bf16"] = dict(base, bf16=True)
        configs["tradam+cl+bf16"] = dict(base, channels_last=True, bf16=True)
    if args.compile:
        if bf16:
            configs["tradam+cl+bf16+compile"] = dict(base, channels_last=True, bf16=True, compile=True)
        else:
            configs["tradam+compile"] = dict(base, compile=True)
    if args.only:
        wanted = ["original"] + [c for c in args.only.split(",") if c != "original"]
        configs = {k: configs[k] for k in wanted}
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, unet_256 + basic D, "
          f"ngf {args.ngf} ndf {args.ndf}, batch 1, {args.size}x{args.size}; {args.repeats} rounds x {args.iters} "
          f"iterations per configuration", flush=True)
    runners, times = {}, {name: [] for name in configs}
    for name, cfg in configs.items():
        runners[name] = build(cfg, device, args.size, args.ngf, args.ndf, seed=0)
        t = time.perf_counter()
        for _ in range(args.warmup):
            runners[name][0]()
        runners[name][1].clear()
        print(f"  built and warmed up {name} ({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for name in configs:
            run, _ = runners[name]
            times[name] += [run() for _ in range(args.iters)]
    def med(name: str, k: int) -> float:
        return statistics.median(t[k] for t in times[name])

    ref, ref_cpu = med("original", 0), med("original", 1)
    print(f"\n{'configuration':<26}{'s/iter':>9}{'G opt step s':>14}{'ratio':>8}{'it/s x':>8}{'CPU s/iter':>12}"
          f"{'CPU ratio':>11}")
    for name in configs:
        wall, cpu = med(name, 0), med(name, 1)
        step = statistics.median(runners[name][1]) if runners[name][1] else float("nan")
        print(f"{name:<26}{wall:>9.4f}{step:>14.4f}{wall / ref:>8.3f}{ref / wall:>8.2f}{cpu:>12.4f}"
              f"{cpu / ref_cpu:>11.3f}")
    print("\nmedians over the timed iterations. ratio = wall time per iteration / original's (target for ours on "
          "CPU: <= 0.75); it/s x = speed-up. CPU s = process CPU time (all threads), less sensitive than wall time "
          "to other processes on a busy machine (on CUDA it only measures the host side).")


if __name__ == "__main__":
    main()
