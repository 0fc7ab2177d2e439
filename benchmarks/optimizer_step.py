"""Optimizer step time: TRAdam / TRSGD modes against torch's Adam / SGD, on pix2pix's generator shapes.

Prints two tables (Adam family, SGD-momentum family). Every row runs the same parameter tensors
(the U-Net 256 generator: 54.4M parameters in 43 tensors by default) and the same gradients; a
measurement is one full TR cycle of ``--period`` steps (so TR's k == 0 anchor copy is included), and
the figure is the per-step median over ``--repeats`` cycles in each of ``--rounds`` rounds (rows are
visited round-robin, so machine noise spreads over all rows). The ratio column is against torch's
fused kernel measured in the same run.

    python benchmarks/optimizer_step.py                 # full size (needs ~2 GB of RAM)
    python benchmarks/optimizer_step.py --quick         # ngf 16 (3.4M params), 1 round: a smoke run
    python benchmarks/optimizer_step.py --device cuda   # same rows on a GPU

"Authors' loop" is a per-parameter Python loop in the style of the authors' release (TR-Adam /
TR-SGD written with tensor ops per parameter, allocating the proximal gradient).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pix2pix_tr.optim import TRAdam, TRSGD, TrajectoryRegularized  # noqa: E402

LR = 2e-4
TR = dict(tr_lambda=0.1)


def unet_shapes(ngf: int, num_downs: int = 8, in_nc: int = 3, out_nc: int = 3) -> list[tuple]:
    """Parameter shapes of pix2pix's UnetGenerator with BatchNorm (convs without bias but the last)."""
    mults = [1, 2, 4] + [8] * (num_downs - 3)
    shapes = []
    for i in range(num_downs):
        outer = in_nc if i == 0 else ngf * mults[i - 1]
        inner = ngf * mults[i]
        shapes.append((inner, outer, 4, 4))  # down conv
        if 0 < i < num_downs - 1:
            shapes += [(inner,), (inner,)]  # down norm
        up_in = inner if i == num_downs - 1 else inner * 2
        if i == 0:
            shapes += [(up_in, out_nc, 4, 4), (out_nc,)]  # outermost up conv has a bias
        else:
            shapes += [(up_in, outer, 4, 4), (outer,), (outer,)]  # up conv + up norm
    return shapes


def generator_shapes(ngf: int) -> tuple[list[tuple], str]:
    try:
        from pix2pix_tr.models import define_G

        net = define_G("unet_256", ngf=ngf)
        return [tuple(p.shape) for p in net.parameters()], "pix2pix_tr.models.define_G('unet_256')"
    except Exception:  # the models package may be missing when the optim package is lifted out
        return unet_shapes(ngf), "UnetGenerator shapes (built here)"


class AuthorsLoop:
    """TRAlgo as a per-parameter Python loop (the authors' release style), for Adam or momentum SGD."""

    def __init__(self, params, kind, lr=LR, betas=(0.5, 0.999), eps=1e-8, momentum=0.9, tr_lambda=0.1,
                 tr_period=10):
        self.params, self.kind, self.lr, self.betas, self.eps = list(params), kind, lr, betas, eps
        self.momentum, self.lam, self.period, self.n = momentum, tr_lambda, tr_period, 0
        self.state = {p: {} for p in self.params}

    @torch.no_grad()
    def step(self):
        k = self.n % self.period
        lr = self.lr / (k + 1)
        for p in self.params:
            st = self.state[p]
            if k == 0:
                st["anchor"] = p.detach().clone()
            d = p.grad + self.lam * (p - st["anchor"])
            if self.kind == "adam":
                b1, b2 = self.betas
                if "m" not in st:
                    st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                st["m"].mul_(b1).add_(d, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(d, d, value=1 - b2)
                denom = (st["v"].sqrt() / math.sqrt(1 - b2 ** st["t"])).add_(self.eps)
                p.addcdiv_(st["m"], denom, value=-lr / (1 - b1 ** st["t"]))
            else:
                if "buf" not in st:
                    st["buf"] = d.clone()
                else:
                    st["buf"].mul_(self.momentum).add_(d)
                p.add_(st["buf"], alpha=-lr)
        self.n += 1


def adam_rows():
    A = dict(lr=LR, betas=(0.5, 0.999))
    return {
        "torch Adam (default)": lambda ps: torch.optim.Adam(ps, **A),
        "torch Adam foreach": lambda ps: torch.optim.Adam(ps, foreach=True, **A),
        "torch Adam fused": lambda ps: torch.optim.Adam(ps, fused=True, **A),
        "authors' loop (TR-Adam)": lambda ps: AuthorsLoop(ps, "adam"),
        "TRAdam (default)": lambda ps: TRAdam(ps, **A, **TR),
        "TRAdam foreach=True": lambda ps: TRAdam(ps, foreach=True, **A, **TR),
        "TRAdam compiled=True": lambda ps: TRAdam(ps, compiled=True, **A, **TR),
        "TrajectoryRegularized(Adam fused)": lambda ps: TrajectoryRegularized(
            torch.optim.Adam(ps, fused=True, **A), **TR),
    }, "torch Adam fused"


def sgd_rows():
    S = dict(lr=0.01, momentum=0.9)
    return {
        "torch SGD (default)": lambda ps: torch.optim.SGD(ps, **S),
        "torch SGD foreach": lambda ps: torch.optim.SGD(ps, foreach=True, **S),
        "torch SGD fused": lambda ps: torch.optim.SGD(ps, fused=True, **S),
        "authors' loop (TR-SGD)": lambda ps: AuthorsLoop(ps, "sgd"),
        "TRSGD (default)": lambda ps: TRSGD(ps, **S, **TR),
        "TRSGD foreach=True": lambda ps: TRSGD(ps, foreach=True, **S, **TR),
        "TRSGD compiled=True": lambda ps: TRSGD(ps, compiled=True, **S, **TR),
        "TrajectoryRegularized(SGD fused)": lambda ps: TrajectoryRegularized(
            torch.optim.SGD(ps, fused=True, **S), **TR),
    }, "torch SGD fused"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_row(make, params, device, period, repeats, warmup_cycles=1):
    opt = make(params)
    for _ in range(warmup_cycles * period):  # state allocation, compilation, first-step paths
        opt.step()
    sync(device)
    per_step = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(period):
            opt.step()
        sync(device)
        per_step.append((time.perf_counter() - t0) / period)
    del opt
    gc.collect()
    return per_step


def run_table(title, rows, baseline, params, device, args):
    times = {name: [] for name in rows}
    for r in range(args.rounds):
        for name, make in rows.items():
            times[name] += time_row(make, params, device, args.period, args.repeats)
            print(f"  [{title}] round {r + 1}/{args.rounds} {name}: "
                  f"{statistics.median(times[name]) * 1e3:.1f} ms", file=sys.stderr, flush=True)
    base = statistics.median(times[baseline])
    print(f"\n{title}: per-step median over {len(times[baseline])} cycles of {args.period} steps")
    print(f"| {'optimizer':36s} | {'ms/step':>8s} | {'vs fused':>8s} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 10}|")
    for name in rows:
        med = statistics.median(times[name])
        print(f"| {name:36s} | {med * 1e3:8.1f} | {med / base:7.2f}x |")
    return {name: statistics.median(v) for name, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="ngf 16, 1 round, 2 repeats: a smoke run")
    ap.add_argument("--ngf", type=int, default=64, help="generator width (64 = the paper's 54.4M params)")
    ap.add_argument("--repeats", type=int, default=3, help="timed cycles per row per round")
    ap.add_argument("--rounds", type=int, default=2, help="round-robin passes over the rows")
    ap.add_argument("--period", type=int, default=10, help="tr_period S (steps per timed cycle)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--only", choices=["adam", "sgd"], default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.ngf, args.rounds, args.repeats = 16, 1, 2
    if args.period < 1 or args.repeats < 1 or args.rounds < 1 or args.ngf < 1:
        ap.error("--period, --repeats, --rounds and --ngf must be positive integers")
    try:
        device = torch.device(args.device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        ap.error(f"--device {args.device}: not usable here ({exc}); use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    TR["tr_period"] = args.period
    shapes, origin = generator_shapes(args.ngf)
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter((0.02 * torch.randn(s, generator=gen)).to(device)) for s in shapes]
    for p in params:
        p.grad = (1e-3 * torch.randn(p.shape, generator=gen)).to(device)
    n = sum(p.numel() for p in params)
    print(f"# {origin}, ngf={args.ngf}: {n / 1e6:.1f}M params in {len(params)} tensors; device {device}; "
          f"torch {torch.__version__}; {torch.get_num_threads()} threads")
    results = {}
    if args.only in (None, "adam"):
        rows, base = adam_rows()
        results["adam"] = run_table("Adam family (lr 2e-4, betas (0.5, 0.999))", rows, base, params, device,
                                    args)
    if args.only in (None, "sgd"):
        rows, base = sgd_rows()
        results["sgd"] = run_table("SGD momentum 0.9", rows, base, params, device, args)
    return results


if __name__ == "__main__":
    main()
