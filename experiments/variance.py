"""The paper's mechanism, measured: how much do the iterates fluctuate around a known minimum, with and without TR?

The paper motivates TRAlgo by the noise of small-batch gradients: the proximal term (lambda/2)||w - w_t||^2 keeps
the inner iterates near the anchor, and the inner step size lr/(k+1) shrinks within each period, so the
trajectory should wander less. Here that is measured where everything is computable: a noisy linear least-squares
problem ``f(w) = (1/2n)||X w - y||^2`` with its exact minimiser ``w*`` (from ``lstsq``) and its Hessian
``H = X^T X / n``. Each optimizer runs at a fixed learning rate with mini-batches of size b drawn with
replacement; after a burn-in the script averages, per run, over the remaining steps:

* ``iterate_msd``: mean squared distance to the minimum, E||w_t - w*||^2 (the iterate variance, plus any bias);
* ``excess_loss``: E[f(w_t) - f(w*)] = E[(w_t - w*)^T H (w_t - w*)] / 2, what a user would see as loss;
* ``step_sq``: E||w_{t+1} - w_t||^2, the size of the actual updates;
* ``grad_noise``: E||g_t - grad f(w_t)||^2, the noise of the mini-batch gradient itself (a control: TR does
  not change the gradient noise, only what the iterates do with it).

Optimizers compared (all with the same momentum and the same mini-batches for a given seed):

* ``sgd``: the baseline at lr;
* ``trsgd``: the paper's TRSGD (lambda, S, inner decay lr/(k+1)) at the same lr;
* ``trsgd-nodecay``: the proximal term alone (``tr_inner_decay=False``);
* ``sgd-matched``: SGD at the *mean* TR step size lr * H_S / S (0.29 lr for S = 10): the step size alone;
* ``trsgd-reference``: TRSGD in the authors' reference mode, c = 2 lambda lr0 / lr.

Sweeps: ``--tr_lambdas`` (the proximal strength; the theory's strong pull is lambda ~ 2L, L = 1 here, the largest
eigenvalue of H being about 1) and ``--lr_factors``: every optimizer runs at lr x factor, as after the lr cuts of
a step schedule, while reference mode keeps lr0 = lr, so its c grows 10x and 100x at factors 0.1 and 0.01.
Ratios to SGD are per seed, reported as the mean with a 95% bootstrap interval over seeds.

Comparing the four separates the regulariser's effect from the smaller average step. The seeds run as rows of
one parameter tensor (all these optimizers act element-wise, so the rows are independent runs), which makes the
whole table a few seconds of CPU.

    python -m experiments.variance --out experiments/results/variance
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from experiments.common import make_optimizer
from pix2pix_tr.cli import json_clean
from pix2pix_tr.io import atomic_open, atomic_write_text

__all__ = ["OPTIMIZERS", "make_problem", "run_variance", "measure", "variance_table", "main"]

OPTIMIZERS = ("sgd", "trsgd", "trsgd-nodecay", "sgd-matched", "trsgd-reference")
USES_LAMBDA = ("trsgd", "trsgd-nodecay", "trsgd-reference")
METRICS = ("iterate_msd", "excess_loss", "step_sq", "grad_noise")


def make_problem(n: int = 512, d: int = 20, noise: float = 1.0, condition: float = 10.0, seed: int = 0
                 ) -> dict[str, torch.Tensor]:
    """Least squares with features of covariance eigenvalues log-spaced in [1/condition, 1] and label noise.

    Returns float64 ``X (n, d)``, ``y (n,)``, the exact minimiser ``w_star`` and the Hessian ``H = X^T X / n``.
    """
    if n < d:
        raise ValueError(f"need at least as many samples as dimensions for a unique minimum (n={n}, d={d})")
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -math.log10(condition), d, dtype=torch.float64).sqrt()
    X = torch.randn(n, d, generator=gen, dtype=torch.float64) * scales
    w_true = torch.randn(d, generator=gen, dtype=torch.float64)
    y = X @ w_true + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    w_star = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    return dict(X=X, y=y, w_star=w_star, H=X.T @ X / n)


def _optimizer(name: str, param: torch.Tensor, lr: float, momentum: float, tr_lambda: float, tr_period: int,
               lr_factor: float = 1.0):
    """One of :data:`OPTIMIZERS` at ``lr x lr_factor``, built by :func:`experiments.common.make_optimizer`."""
    common = dict(momentum=momentum, tr_lambda=tr_lambda, tr_period=tr_period)
    if name == "trsgd-reference":  # built at lr0 = lr, then at lr x factor as a step schedule would leave it
        opt = make_optimizer("trsgd", [param], lr=lr, tr_mode="reference", **common)
        opt.param_groups[0]["lr"] = lr * lr_factor
        return opt
    lr = lr * lr_factor
    if name == "sgd":
        return make_optimizer("sgd", [param], lr=lr, **common)
    if name == "sgd-matched":
        mean_factor = sum(1.0 / (k + 1) for k in range(tr_period)) / tr_period
        return make_optimizer("sgd", [param], lr=lr * mean_factor, **common)
    if name in ("trsgd", "trsgd-nodecay"):
        return make_optimizer("trsgd", [param], lr=lr, tr_inner_decay=name == "trsgd", **common)
    raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def measure(problem: dict[str, torch.Tensor], optimizer: str, batch_size: int, seeds: Sequence[int], *,
            lr: float = 0.01, momentum: float = 0.9, tr_lambda: float = 0.1, tr_period: int = 10,
            burn_in: int = 2000, steps: int = 4000, lr_factor: float = 1.0) -> list[dict[str, float]]:
    """Run ``optimizer`` once per seed (rows of one tensor) and return one dict of :data:`METRICS` per seed.

    The seed fixes the starting point (w* + N(0, I)) and the mini-batch draws, so every optimizer sees the same
    batches for the same seed. A run that diverges reports ``inf`` (``"inf"`` in variance.json: strict JSON, the
    rule of :func:`pix2pix_tr.cli.json_clean`).
    """
    X, y, w_star, H = problem["X"], problem["y"], problem["w_star"], problem["H"]
    n, d = X.shape
    rows = len(seeds)
    gens = [torch.Generator().manual_seed(1000 + s) for s in seeds]
    start = torch.stack([w_star + torch.randn(d, generator=g, dtype=torch.float64) for g in gens])
    w = start.clone().requires_grad_(True)
    opt = _optimizer(optimizer, w, lr, momentum, tr_lambda, tr_period, lr_factor)
    Xty = X.T @ y / n
    full_grad = lambda v: v @ H - Xty  # noqa: E731  (rows, d); H is symmetric
    sums = {m: torch.zeros(rows, dtype=torch.float64) for m in METRICS}
    for t in range(burn_in + steps):
        idx = torch.stack([torch.randint(0, n, (batch_size,), generator=g) for g in gens])  # (rows, b)
        Xb, yb = X[idx], y[idx]
        with torch.no_grad():
            residual = torch.einsum("rbd,rd->rb", Xb, w) - yb
            grad = torch.einsum("rbd,rb->rd", Xb, residual) / batch_size
            before = w.detach().clone()
            if t >= burn_in:
                sums["grad_noise"] += ((grad - full_grad(before)) ** 2).sum(1)
        w.grad = grad
        opt.step()
        if t >= burn_in:
            with torch.no_grad():
                diff = w - w_star
                sums["iterate_msd"] += (diff ** 2).sum(1)
                sums["excess_loss"] += 0.5 * torch.einsum("rd,de,re->r", diff, H, diff)
                sums["step_sq"] += ((w - before) ** 2).sum(1)
    out = []
    for r in range(rows):
        rec = {m: sums[m][r].item() / steps for m in METRICS}
        out.append({m: (v if math.isfinite(v) else float("inf")) for m, v in rec.items()})
    return out


def run_variance(batch_sizes: Sequence[int] = (1, 2, 4, 8), optimizers: Sequence[str] = OPTIMIZERS,
                 seeds: Sequence[int] = range(8), *, lr: float = 0.01, momentum: float = 0.9,
                 tr_lambda: float = 0.1, tr_period: int = 10, burn_in: int = 2000, steps: int = 4000,
                 n: int = 512, d: int = 20, noise: float = 1.0, condition: float = 10.0,
                 problem_seed: int = 0, tr_lambdas: Sequence[float] | None = None,
                 lr_factors: Sequence[float] = (1.0,)) -> dict[str, Any]:
    """The whole experiment: ``{"settings": ..., "runs": [{batch_size, optimizer, seed, tr_lambda, lr_factor,
    <metrics>}, ...]}``. Optimizers that do not use lambda run once per (batch, factor) with ``tr_lambda`` None."""
    problem = make_problem(n, d, noise, condition, problem_seed)
    tr_lambdas = [tr_lambda] if tr_lambdas is None else list(tr_lambdas)
    settings = dict(batch_sizes=list(batch_sizes), optimizers=list(optimizers), seeds=list(seeds), lr=lr,
                    momentum=momentum, tr_lambda=tr_lambda, tr_period=tr_period, burn_in=burn_in, steps=steps,
                    n=n, d=d, noise=noise, condition=condition, problem_seed=problem_seed,
                    tr_lambdas=tr_lambdas, lr_factors=list(lr_factors))
    runs = []
    for factor in lr_factors:
        for b in batch_sizes:
            for name in optimizers:
                for lam in (tr_lambdas if name in USES_LAMBDA else [None]):
                    per_seed = measure(problem, name, b, list(seeds), lr=lr, momentum=momentum,
                                       tr_lambda=tr_lambda if lam is None else lam, tr_period=tr_period,
                                       burn_in=burn_in, steps=steps, lr_factor=factor)
                    runs += [dict(batch_size=b, optimizer=name, seed=s, tr_lambda=lam, lr_factor=factor, **m)
                             for s, m in zip(seeds, per_seed)]
    return dict(settings=settings, runs=runs)


def sweep_table(results: dict[str, Any], metric: str = "iterate_msd") -> str:
    """Markdown, one row per (lr factor, batch, lambda): each optimizer's per-seed ratio of ``metric`` to SGD, mean
    [95% bootstrap interval over seeds]."""
    from experiments import stats

    runs = results["runs"]
    opts = [o for o in dict.fromkeys(r["optimizer"] for r in runs) if o != "sgd"]
    header = ["lr factor", "batch", "λ"] + [f"{o} / sgd" for o in opts]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]

    def by_seed(opt, b, f, lam):
        return {r["seed"]: r[metric] for r in runs if r["optimizer"] == opt and r["batch_size"] == b
                and r["lr_factor"] == f and r.get("tr_lambda") == lam}

    for f in results["settings"]["lr_factors"]:
        for b in results["settings"]["batch_sizes"]:
            sgd = by_seed("sgd", b, f, None)
            for lam in results["settings"]["tr_lambdas"]:
                cells = [f"{f:g}", str(b), f"{lam:g}"]
                for o in opts:
                    mine = by_seed(o, b, f, lam if o in USES_LAMBDA else None)
                    ratios = [mine[s] / sgd[s] if math.isfinite(mine[s]) else math.nan for s in mine if s in sgd]
                    res = stats.bootstrap_ci(ratios)
                    if res["n"] and res["mean"] > 1e6:  # finite but astronomically far: the run blew up
                        cells.append(f"blew up (ratio {res['mean']:.0e})")
                    else:
                        cells.append(stats.fmt_ci(res, 3) if ratios else "—")
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(values: list[float]) -> str:
    if any(not math.isfinite(v) for v in values):
        return "diverged"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3g} ± {std:.2g}"


def variance_table(results: dict[str, Any], metric: str = "iterate_msd") -> str:
    """Markdown: rows = batch size, columns = optimizers (mean ± std over seeds of ``metric``) and, per
    optimizer other than ``sgd``, the per-seed ratio to SGD (mean ± std)."""
    runs = results["runs"]
    opts = list(dict.fromkeys(r["optimizer"] for r in runs))
    others = [o for o in opts if o != "sgd"] if "sgd" in opts else []
    header = ["batch"] + opts + [f"{o} / sgd" for o in others]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lam0, f0 = results["settings"]["tr_lambda"], 1.0
    runs = [r for r in runs if r.get("lr_factor", f0) == f0 and r.get("tr_lambda", lam0) in (lam0, None)]
    for b in sorted({r["batch_size"] for r in runs}):
        by = {o: {r["seed"]: r[metric] for r in runs if r["batch_size"] == b and r["optimizer"] == o}
              for o in opts}
        cells = [str(b)] + [_fmt(list(by[o].values())) for o in opts]
        for o in others:
            ratios = [by[o][s] / by["sgd"][s] for s in by[o] if s in by["sgd"] and by["sgd"][s] > 0]
            cells.append(_fmt(ratios) if ratios else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(results: dict[str, Any]) -> str:
    s = results["settings"]
    factor = sum(1.0 / (k + 1) for k in range(s["tr_period"])) / s["tr_period"]
    parts = [
        "# Iterate variance around a known minimum: SGD vs TRSGD", "",
        f"Noisy least squares: n={s['n']}, d={s['d']}, label noise {s['noise']}, feature condition number "
        f"{s['condition']}; lr {s['lr']}, momentum {s['momentum']}; TR lambda {s['tr_lambda']}, S "
        f"{s['tr_period']} (mean inner step factor H_S/S = {factor:.3f}, used by sgd-matched); "
        f"{s['burn_in']} burn-in steps then {s['steps']} measured steps; {len(s['seeds'])} seeds "
        f"(mean ± std over seeds; ratios are per seed).", ""]
    titles = dict(iterate_msd="E||w - w*||^2 (iterate variance around the minimum)",
                  excess_loss="E[f(w) - f(w*)] (excess loss)",
                  step_sq="E||w_{t+1} - w_t||^2 (size of the updates)",
                  grad_noise="E||g - grad f(w)||^2 (mini-batch gradient noise: a control)")
    for m in METRICS:
        parts += [f"## {titles[m]}", "", variance_table(results, m)]
    if len(s.get("tr_lambdas", [1])) > 1 or len(s.get("lr_factors", [1])) > 1:
        parts += ["## Sweep: ratio to SGD of E||w - w*||^2, per seed, mean [95% bootstrap interval]", "",
                  "Every optimizer at lr x factor; reference mode keeps lr0 = lr (c = 2 lambda / factor). "
                  "inf/diverged: the run blew up.", "", sweep_table(results, "iterate_msd"),
                  "## Sweep: ratio to SGD of the excess loss E[f(w) - f(w*)]", "", sweep_table(results, "excess_loss")]
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.variance", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(8)))
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--tr_lambda", type=float, default=0.1, help="lambda of the main tables")
    p.add_argument("--tr_lambdas", nargs="+", type=float, default=None,
                   help="lambda sweep (default: --tr_lambda only); the main tables use --tr_lambda, which must be in it")
    p.add_argument("--lr_factors", nargs="+", type=float, default=[1.0],
                   help="run every optimizer at lr x factor (reference mode keeps lr0 = lr: c grows as 1/factor)")
    p.add_argument("--tr_period", type=int, default=10)
    p.add_argument("--burn_in", type=int, default=2000)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--n", type=int, default=512, help="samples of the least-squares problem")
    p.add_argument("--d", type=int, default=20, help="dimensions")
    p.add_argument("--noise", type=float, default=1.0, help="label noise standard deviation")
    p.add_argument("--condition", type=float, default=10.0, help="condition number of the feature covariance")
    p.add_argument("--problem_seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny tensors: 1 is fastest)")
    p.add_argument("--out", default="experiments/results/variance", help="folder for variance.json and .md")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for flag in ("batch_sizes", "tr_period", "burn_in", "steps", "n", "d"):
        values = getattr(args, flag)
        if any(v < 1 for v in (values if isinstance(values, list) else [values])):
            p.error(f"--{flag} must be positive, got {values}")
    if args.n < args.d:
        p.error(f"--n ({args.n}) must be at least --d ({args.d}) so that the minimum is unique")
    if not args.lr > 0:
        p.error(f"--lr must be positive, got {args.lr}")
    if args.tr_lambdas is not None and args.tr_lambda not in args.tr_lambdas:
        p.error(f"--tr_lambdas {args.tr_lambdas} must include --tr_lambda {args.tr_lambda} (the main tables' lambda)")
    if 1.0 not in args.lr_factors or any(not f > 0 for f in args.lr_factors):
        p.error(f"--lr_factors must be positive and include 1 (the main tables), got {args.lr_factors}")
    torch.set_num_threads(args.threads)
    results = run_variance(args.batch_sizes, args.optimizers, args.seeds, lr=args.lr, momentum=args.momentum,
                           tr_lambda=args.tr_lambda, tr_period=args.tr_period, burn_in=args.burn_in,
                           steps=args.steps, n=args.n, d=args.d, noise=args.noise, condition=args.condition,
                           problem_seed=args.problem_seed, tr_lambdas=args.tr_lambdas, lr_factors=args.lr_factors)
    out = Path(args.out)
    with atomic_open(out / "variance.json", "w", encoding="utf-8") as handle:
        json.dump(json_clean(results), handle, indent=1)
    text = report(results)
    atomic_write_text(out / "variance.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
