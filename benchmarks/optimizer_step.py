"""Optimizer step time: TRAdam / TRSGD modes against torch's Adam / SGD, on pix2pix's generator shapes.

Prints two tables (Adam family, SGD-momentum family). Every row runs the same parameter tensors
(the U-Net 256 generator: 54.4M parameters in 43 tensors by default) and the same gradients; a
measurement is one full TR cycle of ``--period`` steps (so TR's k == 0 anchor copy is included), and
each row is timed in alternation with torch's fused kernel (paired cycles), and its ratio is the
median over ``--repeats`` pairs of (row time / fused time), which cancels slow drifts of machine load.
On a shared machine use ``--threads 1``: with every core busy, multi-threaded kernels wait for
descheduled threads and the timings become meaningless.

    python benchmarks/optimizer_step.py --threads 1     # full size (about 2 GB of RAM)
    python benchmarks/optimizer_step.py --quick         # ngf 16 (3.4M params), 2 repeats: a smoke run
    python benchmarks/optimizer_step.py --device cuda   # same rows on a GPU
    python benchmarks/optimizer_step.py --against /tmp/old/pix2pix_tr/optim   # + the TR rows of another copy

``--against DIR`` loads a second copy of the optimizer package (e.g. the previous release's, exported with
``git archive <commit> pix2pix_tr/optim | tar -x -C /tmp/old``) and adds its TR rows, marked ``[against]``, to the
same tables: both versions are timed in the same process on the same tensors, each paired with the same fused
baseline, so a refactoring can be shown not to slow the step.

"Authors' loop" is a per-parameter Python loop in the style of the authors' release (TR-Adam /
TR-SGD written with tensor ops per parameter, allocating the proximal gradient).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
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


class FlatBound:
    """``compiled=True``'s own kernel run on one flat tensor of the same total size, with no TR bookkeeping: how
    close the memory system lets a TR step come to the fused baseline when the per-tensor structure is gone (a
    bound for the compiled rows, not an optimizer; its numbers do not train anything)."""

    def __init__(self, params, kind):
        from pix2pix_tr.optim import _compiled

        self.call, self.kind = _compiled._call, kind
        n, like = sum(p.numel() for p in params), params[0]
        gen = torch.Generator().manual_seed(1)
        flat = [(0.02 * torch.randn(n, generator=gen)).to(like.device) for _ in range(5 if kind == "adam" else 4)]
        if kind == "adam":  # p, g, anchor, exp_avg, exp_avg_sq (exp_avg_sq must be >= 0)
            flat[4].abs_()
            b1, b2, t = 0.5, 0.999, 100
            self.s = _compiled._scalars([1.0, 0.05, 0.05, b1, b2, 1e-8, 1.0, LR / (1 - b1 ** t),
                                         1 / math.sqrt(1 - b2 ** t)], like)
        else:  # p, g, anchor, momentum buffer
            self.s = _compiled._scalars([0.01, 0.05, 0.05, 0.9, 0.0, 1.0, 1.0], like)
        self.flat = [[t] for t in flat]

    def step(self):  # a step with the anchor read (k > 0), as 9 of every 10 TR steps
        if self.kind == "adam":
            self.call("_adam_shared", *self.flat, self.s, False)
        else:
            self.call("_sgd", *self.flat, self.s, False, True, False)


def load_optim_package(folder: str, name: str = "optim_against"):
    """Import the optimizer package in ``folder`` (a copy of pix2pix_tr/optim) under another name."""
    init = Path(folder) / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(Path(folder))])
    if spec is None or not init.is_file():
        raise FileNotFoundError(f"--against {folder}: no __init__.py there; give the folder of a copy of "
                                f"pix2pix_tr/optim")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tr_adam_rows(cls, A, suffix=""):
    return {
        f"TRAdam (default){suffix}": lambda ps: cls(ps, **A, **TR),
        f"TRAdam foreach=True{suffix}": lambda ps: cls(ps, foreach=True, **A, **TR),
        f"TRAdam for-loop{suffix}": lambda ps: cls(ps, foreach=False, fused=False, **A, **TR),
        f"TRAdam capturable=True{suffix}": lambda ps: cls(ps, capturable=True, **A, **TR),
        f"TRAdam compiled=True{suffix}": lambda ps: cls(ps, compiled=True, **A, **TR),
    }


def tr_sgd_rows(cls, S, suffix=""):
    return {
        f"TRSGD (default){suffix}": lambda ps: cls(ps, **S, **TR),
        f"TRSGD foreach=True{suffix}": lambda ps: cls(ps, foreach=True, **S, **TR),
        f"TRSGD for-loop{suffix}": lambda ps: cls(ps, foreach=False, fused=False, **S, **TR),
        f"TRSGD capturable=True{suffix}": lambda ps: cls(ps, capturable=True, **S, **TR),
        f"TRSGD compiled=True{suffix}": lambda ps: cls(ps, compiled=True, **S, **TR),
    }


def adam_rows(against=None):
    A = dict(lr=LR, betas=(0.5, 0.999))
    rows = {
        "torch Adam (default)": lambda ps: torch.optim.Adam(ps, **A),
        "torch Adam foreach": lambda ps: torch.optim.Adam(ps, foreach=True, **A),
        "torch Adam fused": lambda ps: torch.optim.Adam(ps, fused=True, **A),
        "torch Adam fused capturable": lambda ps: torch.optim.Adam(ps, fused=True, capturable=True, **A),
        "authors' loop (TR-Adam)": lambda ps: AuthorsLoop(ps, "adam"),
        **tr_adam_rows(TRAdam, A),
        **(tr_adam_rows(against.TRAdam, A, " [against]") if against else {}),
        "TrajectoryRegularized(Adam fused)": lambda ps: TrajectoryRegularized(
            torch.optim.Adam(ps, fused=True, **A), **TR),
        "bound: compiled kernel, flat tensor": lambda ps: FlatBound(ps, "adam"),
    }
    return rows, "torch Adam fused"


def sgd_rows(against=None):
    S = dict(lr=0.01, momentum=0.9)
    rows = {
        "torch SGD (default)": lambda ps: torch.optim.SGD(ps, **S),
        "torch SGD foreach": lambda ps: torch.optim.SGD(ps, foreach=True, **S),
        "torch SGD fused": lambda ps: torch.optim.SGD(ps, fused=True, **S),
        "authors' loop (TR-SGD)": lambda ps: AuthorsLoop(ps, "sgd"),
        **tr_sgd_rows(TRSGD, S),
        **(tr_sgd_rows(against.TRSGD, S, " [against]") if against else {}),
        "TrajectoryRegularized(SGD fused)": lambda ps: TrajectoryRegularized(
            torch.optim.SGD(ps, fused=True, **S), **TR),
        "bound: compiled kernel, flat tensor": lambda ps: FlatBound(ps, "sgd"),
    }
    return rows, "torch SGD fused"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # --cpu_time: time.process_time


def cycle(opt, device, period):
    t0 = CLOCK()
    for _ in range(period):
        opt.step()
    sync(device)
    return (CLOCK() - t0) / period


def run_table(title, rows, baseline, params, device, args):
    """Each row is timed in alternation with a fresh baseline optimizer (paired cycles).

    Only two optimizers are alive at a time (full size: about 1.3 GB of state), and a row's ratio is
    the median over repeats of (its cycle time / the baseline cycle just before it), so slow drifts
    in machine load cancel out.
    """
    results = {}
    base_times = []
    for name, make in rows.items():
        if name == baseline:
            continue
        base_opt, opt = rows[baseline](params), make(params)
        for o in (base_opt, opt):  # state allocation, first-step paths, compilation of both kernels of compiled=True
            for _ in range(2 * args.period):  # (k == 0 writes the anchors inside its own loop variant)
                o.step()
        sync(device)
        times, ratios = [], []
        for _ in range(args.repeats):
            tb = cycle(base_opt, device, args.period)
            tr = cycle(opt, device, args.period)
            base_times.append(tb)
            times.append(tr)
            ratios.append(tr / tb)
        results[name] = (statistics.median(times), statistics.median(ratios), min(ratios), max(ratios))
        print(f"  [{title}] {name}: {results[name][0] * 1e3:.1f} ms, {results[name][1]:.2f}x", file=sys.stderr,
              flush=True)
        del base_opt, opt
        gc.collect()
    results[baseline] = (statistics.median(base_times), 1.0, 1.0, 1.0)
    print(f"\n{title}: per-step medians, cycles of {args.period} steps, {args.repeats} paired repeats per row")
    print(f"| {'optimizer':46s} | {'ms/step':>8s} | {'vs fused':>8s} | {'range':>11s} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 10}|{'-' * 13}|")
    for name in rows:
        ms, ratio, lo, hi = results[name]
        rng = "" if name == baseline else f"{lo:.2f}-{hi:.2f}"
        print(f"| {name:46s} | {ms * 1e3:8.1f} | {ratio:7.2f}x | {rng:>11s} |")
    return results


def run_versus(title, rows, params, device, args):
    """This code's TR rows against their ``[against]`` twins, timed in alternation (paired cycles, the order swapped
    every repeat): the median of (this / against) per row, the refactoring check of ``--against``."""
    pairs = [(name, f"{name} [against]") for name in rows if f"{name} [against]" in rows]
    out = {}
    for name, twin in pairs:
        new, old = rows[name](params), rows[twin](params)
        for o in (new, old):
            for _ in range(2 * args.period):
                o.step()
        sync(device)
        ratios = []
        for r in range(args.repeats):
            first, second = (new, old) if r % 2 == 0 else (old, new)
            t1, t2 = cycle(first, device, args.period), cycle(second, device, args.period)
            ratios.append(t1 / t2 if first is new else t2 / t1)
        out[name] = (statistics.median(ratios), min(ratios), max(ratios))
        print(f"  [{title}] {name} vs against: {out[name][0]:.3f}x", file=sys.stderr, flush=True)
        del new, old
        gc.collect()
    print(f"\n{title}: this code / --against, per-step, cycles of {args.period} steps, {args.repeats} alternated "
          f"repeats per row")
    print(f"| {'optimizer':36s} | {'this/against':>12s} | {'range':>11s} |")
    print(f"|{'-' * 38}|{'-' * 14}|{'-' * 13}|")
    for name, (ratio, lo, hi) in out.items():
        print(f"| {name:36s} | {ratio:11.3f}x | {lo:.2f}-{hi:.2f} |")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="ngf 16, 2 repeats: a smoke run")
    ap.add_argument("--ngf", type=int, default=64, help="generator width (64 = the paper's 54.4M params)")
    ap.add_argument("--repeats", type=int, default=5, help="paired timed cycles per row")
    ap.add_argument("--period", type=int, default=10, help="tr_period S (steps per timed cycle)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--only", choices=["adam", "sgd"], default=None)
    ap.add_argument("--json", default="", help="also write the tables to this JSON file")
    ap.add_argument("--skip_compiled", action="store_true", help="leave out the compiled=True rows (their "
                    "compilation takes a minute or more on a CPU)")
    ap.add_argument("--skip_slow", action="store_true", help="leave out the for-loop and foreach rows (5-10x "
                    "slower than fused on a CPU) and the authors' loop")
    ap.add_argument("--against", default="", metavar="DIR", help="also time the TR rows of the optimizer package "
                    "in DIR (a copy of pix2pix_tr/optim, e.g. a previous release's), marked [against]")
    ap.add_argument("--cpu_time", action="store_true", help="time with the CPU time of this process "
                    "(time.process_time) instead of the wall clock: on a shared machine it leaves out the time other "
                    "processes hold the core (CPU only, with --threads 1)")
    ap.add_argument("--versus_only", action="store_true", help="with --against: only the direct comparison "
                    "(this code's TR rows alternated with their [against] twins), not the tables against fused")
    args = ap.parse_args(argv)
    if args.quick:
        args.ngf, args.repeats = 16, 2
    if args.period < 1 or args.repeats < 1 or args.ngf < 1:
        ap.error("--period, --repeats and --ngf must be positive integers")
    try:
        device = torch.device(args.device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        ap.error(f"--device {args.device}: not usable here ({str(exc).splitlines()[0]}); use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        if device.type != "cpu" or torch.get_num_threads() != 1:
            ap.error("--cpu_time measures one CPU thread: use it with --device cpu --threads 1")
        global CLOCK
        CLOCK = time.process_time
    TR["tr_period"] = args.period
    shapes, origin = generator_shapes(args.ngf)
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter((0.02 * torch.randn(s, generator=gen)).to(device)) for s in shapes]
    for p in params:
        p.grad = (1e-3 * torch.randn(p.shape, generator=gen)).to(device)
    n = sum(p.numel() for p in params)
    print(f"# {origin}, ngf={args.ngf}: {n / 1e6:.1f}M params in {len(params)} tensors; device {device}; "
          f"torch {torch.__version__}; {torch.get_num_threads()} threads"
          f"{'; CPU time (process_time)' if args.cpu_time else ''}")
    against = None
    if args.against:
        try:
            against = load_optim_package(args.against)
        except (OSError, ImportError) as exc:
            ap.error(str(exc))
    results = {}

    def slow(name):  # torch's non-fused kernels (torch's default is the for-loop on a CPU) and the authors' loop
        return ("foreach" in name or "for-loop" in name or "authors'" in name
                or (name.startswith("torch") and "(default)" in name))

    def keep(rows):
        return {k: v for k, v in rows.items()
                if not (args.skip_compiled and ("compiled" in k or "bound" in k))
                and not (args.skip_slow and slow(k))}

    if args.versus_only and against is None:
        ap.error("--versus_only needs --against DIR")
    versus = {}
    for family, make_rows, title in (("adam", adam_rows, "Adam family (lr 2e-4, betas (0.5, 0.999))"),
                                     ("sgd", sgd_rows, "SGD momentum 0.9")):
        if args.only not in (None, family):
            continue
        rows, base = make_rows(against)
        rows = keep(rows)
        if not args.versus_only:
            results[family] = run_table(title, rows, base, params, device, args)
        if against is not None:
            versus[family] = run_versus(title, rows, params, device, args)
    if args.json:
        from pix2pix_tr.io import atomic_write_text

        table = {fam: {name: dict(ms_per_step=r[0] * 1e3, vs_fused=r[1], lo=r[2], hi=r[3]) for name, r in rows.items()}
                 for fam, rows in results.items()}
        atomic_write_text(Path(args.json), json.dumps(dict(
            header=f"{origin}, ngf={args.ngf}: {n / 1e6:.1f}M params in {len(params)} tensors; device {device}",
            device=str(device), torch=torch.__version__, period=args.period, repeats=args.repeats,
            tables=table, versus={fam: {name: dict(this_over_against=r[0], lo=r[1], hi=r[2]) for name, r in v.items()}
                                  for fam, v in versus.items()}), indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
