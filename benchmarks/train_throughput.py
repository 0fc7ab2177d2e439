"""Seconds per pix2pix training iteration: the original recipe against ours, lever by lever, side by side in one run.

Full-size networks by default (unet_256 generator, 70x70 PatchGAN, ngf = ndf = 64, batch norm), batch 1, 256x256
inputs, the real pix2pix step (:func:`pix2pix_tr.models.pix2pix.train_step`) on random tensors already on the device
(data loading excluded: with DataLoader workers, pinned memory and ``--cache_images`` it overlaps the step).
Configurations, each one lever on top of ``tradam`` so that every lever is measured on its own:

* ``original``        torch.optim.Adam with its default implementation (the for-loop on CPU, foreach on CUDA), fp32,
                      eager, contiguous tensors: what the original pix2pix runs;
* ``tradam``          TRAdam (lambda 0.1, S 10) with its default fast path (torch's fused Adam kernel), fp32, eager;
* ``tradam+copt``     ... with ``compiled=True`` (one torch.compile'd single-pass kernel per network);
* ``tradam+cl``       ... channels_last;
* ``tradam+bf16``     ... bf16 autocast (by default on CUDA only; ``--bf16`` on CPUs with native bf16);
* ``tradam+compile``  ... torch.compile of both networks (``--compile``: compiling takes minutes on a CPU);
* ``tradam+cudagraphs`` ... torch.compile(mode="reduce-overhead"): CUDA graphs of the networks' steps (CUDA only);
* ``ours``            every lever together (channels_last, bf16 where enabled, compiled TRAdam, and on CUDA the
                      reduce-overhead compile, elsewhere the default compile when ``--compile``).

Every configuration gets identical initial weights. The configurations run round-robin, ``--iters`` iterations
each per round, for ``--repeats`` rounds, so slow phases of a busy machine hit all of them; the table shows medians
over all timed iterations, the median time of the generator's optimiser step, the ratio to ``original`` and the
generator L1 loss of the first (warm-up) iteration, computed from the same weights and inputs (it differs from
``original``'s only by bf16 rounding, and by compile's own dropout random stream). Peak GPU memory per configuration
is printed on CUDA. Ratios, not absolute times, are what to compare across machines.

    python benchmarks/train_throughput.py --iters 5 --repeats 3          # CPU, a few minutes
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --threads 1  # the most stable ratios on a busy CPU
    python benchmarks/train_throughput.py --device cuda --compile --batch_size 16 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pix2pix_tr.models import GANLoss, define_D, define_G, required_multiple  # noqa: E402
from pix2pix_tr.models.pix2pix import train_step  # noqa: E402
from pix2pix_tr.optim import TRAdam  # noqa: E402


def configurations(device: torch.device, bf16: bool, compile_: bool) -> dict[str, dict]:
    """The configurations in the order they are built: the original recipe, TRAdam, ours (every lever), then each
    lever alone (with ``--budget_s``, the last ones are left out first)."""
    base = dict(optimizer="tradam", channels_last=False, bf16=False, compile=None)
    mode = "reduce-overhead" if compile_ and device.type == "cuda" else "default" if compile_ else None
    configs = {"original": dict(base, optimizer="adam"), "tradam": dict(base),
               "ours": dict(optimizer="tradam_compiled", channels_last=True, bf16=bf16, compile=mode),
               "tradam+copt": dict(base, optimizer="tradam_compiled"), "tradam+cl": dict(base, channels_last=True)}
    if bf16:
        configs["tradam+bf16"] = dict(base, bf16=True)
    if compile_:
        configs["tradam+compile"] = dict(base, compile="default")
        if device.type == "cuda":
            configs["tradam+cudagraphs"] = dict(base, compile="reduce-overhead")
    return configs


def build(config: dict, device: torch.device, size: int, netG: str, ngf: int, ndf: int, batch_size: int, seed: int):
    torch.manual_seed(seed)
    G = define_G(netG, ngf=ngf).to(device)
    D = define_D("basic", ndf=ndf).to(device)
    if config["channels_last"]:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    A = dict(lr=2e-4, betas=(0.5, 0.999))
    if config["optimizer"] == "adam":  # the original recipe: pix2pix's hyper-parameters, torch's defaults
        opt_G, opt_D = torch.optim.Adam(G.parameters(), **A), torch.optim.Adam(D.parameters(), **A)
    else:
        TR = dict(A, tr_lambda=0.1, tr_period=10, compiled=config["optimizer"] == "tradam_compiled")
        opt_G, opt_D = TRAdam(G.parameters(), **TR), TRAdam(D.parameters(), **TR)
    if config["compile"]:
        G_run, D_run = torch.compile(G, mode=config["compile"]), torch.compile(D, mode=config["compile"])
    else:
        G_run, D_run = G, D
    autocast = (partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16) if config["bf16"]
                else contextlib.nullcontext)
    gen = torch.Generator().manual_seed(seed + 1)
    mf = torch.channels_last if config["channels_last"] else torch.contiguous_format
    real_A = (torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device, memory_format=mf)
    real_B = (torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device, memory_format=mf)
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

    def one_iteration() -> tuple[float, float, dict]:
        if device.type == "cuda" and config["compile"] == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        sync()
        t, c = time.perf_counter(), time.process_time()
        losses, _ = train_step(G_run, D_run, opt_G, opt_D, real_A, real_B, gan_loss=gan_loss, lambda_L1=100.0,
                               D_local=D_run, autocast=autocast)
        sync()
        return time.perf_counter() - t, time.process_time() - c, losses

    return one_iteration, step_times


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per configuration per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all configurations")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per configuration before timing "
                                                           "(compilation, CUDA graph capture, cuDNN autotuning)")
    p.add_argument("--size", type=int, default=256, help="image side")
    p.add_argument("--netG", default="unet_256", help="unet_256 (the paper's), unet_128, unet_64 (quick runs)")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="also time bf16 autocast (default: on CUDA only; CPUs without native bf16, e.g. AVX2-only, "
                        "emulate it and are many times slower)")
    p.add_argument("--only", default="", help="comma-separated configuration names to run (default: all)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--budget_s", type=float, default=0,
                   help="time budget (0: none): configurations not yet built when 60%% of it is spent are left out, "
                        "rounds after the first stop when it is spent")
    args = p.parse_args(argv)
    for flag in ("iters", "repeats", "size", "ngf", "ndf", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be a positive integer")
    if args.size % required_multiple(args.netG):
        p.error(f"--size {args.size}: --netG {args.netG} needs a multiple of {required_multiple(args.netG)}")
    try:
        device = torch.device(args.device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        p.error(f"--device {args.device}: not usable here ({str(exc).splitlines()[0]}); use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bf16 = args.bf16 if args.bf16 is not None else device.type == "cuda"
    configs = configurations(device, bf16, args.compile)
    if args.only:
        unknown = [c for c in args.only.split(",") if c not in configs]
        if unknown:
            p.error(f"--only {','.join(unknown)}: not a configuration here; choose from {', '.join(configs)}")
        configs = {k: configs[k] for k in ["original"] + [c for c in args.only.split(",") if c != "original"]}
    head = (f"torch {torch.__version__}, device {device}"
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
            + f", {torch.get_num_threads()} threads, {args.netG} + basic D, ngf {args.ngf} ndf {args.ndf}, "
              f"batch {args.batch_size}, {args.size}x{args.size}; {args.repeats} rounds x {args.iters} iterations "
              f"per configuration")
    print(head, flush=True)
    runners, times, first_losses, peak_mem, warm_s = {}, {name: [] for name in configs}, {}, {}, {}
    t_start = time.perf_counter()
    over = lambda frac: args.budget_s > 0 and time.perf_counter() - t_start > frac * args.budget_s  # noqa: E731
    for name, cfg in list(configs.items()):
        if name != "original" and len(runners) >= 2 and over(0.6):
            print(f"  left out {name}: 60% of --budget_s {args.budget_s:g} spent", file=sys.stderr, flush=True)
            del configs[name], times[name]
            continue
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        runners[name] = build(cfg, device, args.size, args.netG, args.ngf, args.ndf, args.batch_size, seed=0)
        t = time.perf_counter()
        for i in range(args.warmup):
            torch.manual_seed(12345 + i)  # the same dropout masks for every eager configuration
            losses = runners[name][0]()[2]
            if i == 0:  # the step returns device tensors (no host read inside the timed iterations)
                first_losses[name] = {k: float(v) for k, v in losses.items()}
        runners[name][1].clear()
        warm_s[name] = time.perf_counter() - t
        print(f"  built and warmed up {name} ({warm_s[name]:.1f} s)", file=sys.stderr, flush=True)
        if device.type == "cuda":
            peak_mem[name] = torch.cuda.max_memory_allocated(device) / 2**30
    for r in range(args.repeats):
        if r and over(1.0):
            print(f"  stopped after {r} rounds: --budget_s {args.budget_s:g} spent", file=sys.stderr, flush=True)
            break
        for name in configs:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            run = runners[name][0]
            times[name] += [run()[:2] for _ in range(args.iters)]
            if device.type == "cuda":
                peak_mem[name] = max(peak_mem[name], torch.cuda.max_memory_allocated(device) / 2**30)

    def med(name: str, k: int) -> float:
        return statistics.median(t[k] for t in times[name])

    ref, ref_cpu = med("original", 0), med("original", 1)
    ref_l1 = first_losses["original"].get("G_L1", float("nan"))
    rows = {}
    mem_col = f"{'peak GiB':>9}" if device.type == "cuda" else ""
    print(f"\n{'configuration':<20}{'s/iter':>9}{'it/s':>8}{'G opt step s':>14}{'ratio':>8}{'it/s x':>8}"
          f"{'CPU ratio':>10}{'G_L1 it 1':>11}{'vs orig':>9}{mem_col}")
    for name in configs:
        wall, cpu = med(name, 0), med(name, 1)
        step = statistics.median(runners[name][1]) if runners[name][1] else float("nan")
        l1 = first_losses[name].get("G_L1", float("nan"))
        rows[name] = dict(config=configs[name], s_per_iter=wall, its_per_s=1 / wall, g_opt_step_s=step,
                          ratio=wall / ref, speedup=ref / wall, cpu_ratio=cpu / ref_cpu, first_G_L1=l1,
                          first_G_L1_rel_diff=abs(l1 - ref_l1) / abs(ref_l1), warmup_s=warm_s[name],
                          peak_gib=peak_mem.get(name))
        mem = f"{peak_mem[name]:>9.2f}" if device.type == "cuda" else ""
        print(f"{name:<20}{wall:>9.4f}{1 / wall:>8.2f}{step:>14.4f}{wall / ref:>8.3f}{ref / wall:>8.2f}"
              f"{cpu / ref_cpu:>10.3f}{l1:>11.4f}{rows[name]['first_G_L1_rel_diff']:>9.1e}{mem}")
    print("\nmedians over the timed iterations. ratio = wall time per iteration / original's; it/s x = speed-up. "
          "CPU ratio: process CPU time (on CUDA only the host side). G_L1 it 1: the generator's L1 loss of the first "
          "iteration (same weights and inputs; bf16 and compile's own dropout RNG change it slightly).")
    result = dict(header=head, device=str(device), torch=torch.__version__, batch_size=args.batch_size,
                  size=args.size, netG=args.netG, ngf=args.ngf, ndf=args.ndf, iters=args.iters,
                  repeats=args.repeats, rows=rows)
    if args.json:
        from pix2pix_tr.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
