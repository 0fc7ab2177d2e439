"""Does trajectory regularization help, and why? A paired ablation of TRSGD/TRAdam on real data (digits).

TRAlgo changes two things at once: a proximal pull ``c (w - anchor)`` towards the cycle's anchor, and an inner
step size ``lr / (k + 1)`` whose mean over a cycle is ``H_S / S`` (0.293 for S = 10). The paper never separates
them. Six arms per optimizer family (SGD with momentum 0.9; Adam), all on the same seeds, initial weights and
batch order:

``base``       the plain optimizer at lr;
``matched``    the plain optimizer at lr x H_S / S (TR's mean step size, no regulariser);
``tr``         full TR, the paper's mode (c = lambda, lr / (k + 1));
``prox``       the proximal term only (``tr_inner_decay=False``);
``decay``      the inner decay only (``tr_lambda=0``);
``reference``  the authors' released algorithm: c = 2 lambda lr0 / lr (grows 10x, 100x at the lr cuts), a new
               cycle at every epoch start (``tr_restart()``), the release's Adam eps placement.

Sweeps, one factor at a time around the paper's classification setting (lambda 0.1, S 10, batch 8, lr 0.1 for
SGD / 1e-3 for Adam): lambda, S, batch size, base lr; every run with the paper's step schedule (lr x 0.1 at 50%
and 75% of the epochs). Where a seed diverges (non-finite loss), it is counted and shown, never dropped silently:
its accuracy is left out of the mean and the count is printed beside it.

How it is cheap and exactly paired: the model is small (an MLP 64-H-10 on the 8x8 digits), so all seeds train at
once as one batched model: every parameter has a leading seed dimension and the per-seed losses are summed. The
optimizers' updates are elementwise, so each seed's slice evolves as a separate run with the same initial weights
and batch order would, up to the rounding of the batched matrix products (tests/test_ablation.py: losses equal to
1e-12 relative in float64 against one-seed runs).

Statistics (experiments/stats.py): mean over seeds with a 95% percentile-bootstrap interval; the paired
difference to ``base`` (and ``tr - matched``) seed by seed with its interval; "resolved" when it excludes 0.

    python -m experiments.ablation --preset ablation --out experiments/results/ablation   # < 45 min, 2 CPU cores
    python -m experiments.ablation --preset smoke --out /tmp/ablation_smoke              # seconds (the tests)
    python -m experiments.ablation --report_only --out experiments/results/ablation       # rebuild the pages
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import html
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from experiments import stats
from experiments.common import make_optimizer
from pix2pix_tr.cli import json_clean, positive_int
from pix2pix_tr.io import atomic_write_text

ARMS = ("base", "matched", "tr", "prox", "decay", "reference")
ARM_TITLES = {"base": "base (lr)", "matched": "base at lr·H_S/S", "tr": "TR (paper)", "prox": "proximal only",
              "decay": "inner decay only", "reference": "reference (authors')"}
FAMILIES = ("sgd", "adam")
FAMILY_TITLES = {"sgd": "SGD family (momentum 0.9)", "adam": "Adam family"}
SWEEPS = ("lambda", "S", "batch", "lr", "lr_b2", "lr_b1")  # lr_bN: the lr sweep again at batch N

PRESETS: dict[str, dict[str, Any]] = {
    # experiments/results/ablation: 156 arm-runs x 16 seeds (the measured time is in its index.html).
    "ablation": dict(seeds=list(range(16)), epochs=20, hidden=32, max_train=None,
                     center=dict(batch=8, tr_lambda=0.1, period=10, lr_sgd=0.1, lr_adam=1e-3),
                     lambdas=[0.01, 0.1, 1.0, 10.0], periods=[1, 5, 10, 20], batches=[1, 2, 8, 32, 128],
                     lrs_sgd=[0.01, 0.03, 0.1], lrs_adam=[1e-4, 3e-4, 1e-3],
                     # where SGD at lr 0.1 fails (batch 1, 2): is TR better than the plain optimizer at a lower lr?
                     small_batch_lr=dict(batches=[2, 1], families=["sgd"])),
    # Seconds: the tests run it.
    "smoke": dict(seeds=[0, 1, 2], epochs=2, hidden=8, max_train=200,
                  center=dict(batch=16, tr_lambda=0.1, period=5, lr_sgd=0.1, lr_adam=1e-3),
                  lambdas=[0.1, 1.0], periods=[1, 5], batches=[16, 64], lrs_sgd=[0.1], lrs_adam=[1e-3]),
}


def harmonic_mean_factor(period: int) -> float:
    """H_S / S: the mean of 1 / (k + 1) over k = 0..S-1 (0.2929 for S = 10)."""
    return sum(1.0 / (k + 1) for k in range(period)) / period


# ------------------------------------------------------------------------------------------------ data

def load_digits_tensors(max_train: int | None = None) -> tuple[torch.Tensor, ...]:
    """The fixed stratified digits split, flattened to 64 features and normalised by the train set's mean and
    standard deviation (one scalar each, as small_batch's ``--dataset digits``)."""
    from experiments.data import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split()
    if max_train is not None:
        x_train, y_train = x_train[:max_train], y_train[:max_train]
    mean, std = float(x_train.mean()), float(x_train.std())
    as_x = lambda x: torch.from_numpy(((x - mean) / std).reshape(len(x), -1).astype(np.float32))  # noqa: E731
    return as_x(x_train), torch.from_numpy(y_train), as_x(x_test), torch.from_numpy(y_test)


def batch_orders(seeds: Sequence[int], n: int, epoch: int) -> torch.Tensor:
    """``(R, n)``: seed r's sample order in ``epoch`` (depends only on (seed, epoch): paired across arms)."""
    return torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(s * 1_000_003 + epoch))
                        for s in seeds])


# ----------------------------------------------------------------------------------------------- model

class SeedBatchedMLP(nn.Module):
    """R independent MLPs 64-H-10 (ReLU) in one module: parameters ``(R, ...)``, seed r initialised as
    ``torch.manual_seed(seeds[r])`` followed by ``nn.Linear(64, H)``, ``nn.Linear(H, 10)`` would be."""

    def __init__(self, seeds: Sequence[int], n_in: int = 64, hidden: int = 32, n_out: int = 10,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        w1, b1, w2, b2 = [], [], [], []
        for s in seeds:
            torch.manual_seed(s)
            l1, l2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)
            w1.append(l1.weight.t()), b1.append(l1.bias[None]), w2.append(l2.weight.t()), b2.append(l2.bias[None])
        as_param = lambda ts: nn.Parameter(torch.stack(ts).detach().to(dtype).contiguous())  # noqa: E731
        self.w1, self.b1, self.w2, self.b2 = as_param(w1), as_param(b1), as_param(w2), as_param(b2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (R, B, 64) -> logits (R, B, 10)
        return torch.baddbmm(self.b2, torch.relu(torch.baddbmm(self.b1, x, self.w1)), self.w2)


def per_seed_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch, one value per seed: ``(R,)``."""
    r, b, c = logits.shape
    return nn.functional.cross_entropy(logits.reshape(r * b, c), y.reshape(r * b), reduction="none").view(r, b).mean(1)


# ------------------------------------------------------------------------------------------ optimizers

@dataclasses.dataclass(frozen=True)
class RunKey:
    """One arm at one setting; the settings an arm does not use are None (so sweeps share runs)."""

    family: str
    arm: str
    batch: int
    lr: float
    tr_lambda: float | None
    period: int | None

    @staticmethod
    def make(family: str, arm: str, batch: int, lr: float, tr_lambda: float, period: int) -> "RunKey":
        uses_lambda = arm in ("tr", "prox", "reference")
        uses_period = arm != "base"
        return RunKey(family, arm, batch, lr, tr_lambda if uses_lambda else None, period if uses_period else None)

    def text(self) -> str:
        lam = "-" if self.tr_lambda is None else f"{self.tr_lambda:g}"
        s = "-" if self.period is None else str(self.period)
        return f"{self.family}|{self.arm}|b{self.batch}|lr{self.lr:g}|lam{lam}|S{s}"


def build_optimizer(key: RunKey, params, *, momentum: float = 0.9, weight_decay: float = 5e-4):
    """The arm's optimizer (:func:`experiments.common.make_optimizer`). Plain ones use torch's fused kernel, the
    one TRSGD/TRAdam run on, so that S = 1 reproduces the base optimizer bit for bit."""
    sgd = key.family == "sgd"
    common = dict(momentum=momentum if sgd else 0.0, weight_decay=weight_decay)
    if key.arm in ("base", "matched"):
        lr = key.lr * (harmonic_mean_factor(key.period) if key.arm == "matched" else 1.0)
        return make_optimizer("sgd" if sgd else "adam", params, lr=lr, fused=True, **common)
    return make_optimizer("trsgd" if sgd else "tradam", params, lr=key.lr, **common,
                          tr_lambda=key.tr_lambda if key.arm != "decay" else 0.0, tr_period=key.period,
                          tr_inner_decay=key.arm != "prox", tr_mode="reference" if key.arm == "reference" else "paper")


# ----------------------------------------------------------------------------------------------- a run

def fingerprint(model: nn.Module, r: int) -> str:
    """A hash of seed r's final weights (equal hashes = bit-identical runs)."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach()[r].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_arm(key: RunKey, seeds: Sequence[int], data: tuple[torch.Tensor, ...], *, epochs: int, hidden: int,
              dtype: torch.dtype = torch.float32, milestones: Sequence[int] | None = None) -> dict[str, Any]:
    """Train ``key``'s arm for every seed at once; per-seed final numbers, curves and weight fingerprints."""
    x_train, y_train, x_test, y_test = (t.to(dtype) if t.is_floating_point() else t for t in data)
    model = SeedBatchedMLP(seeds, x_train.shape[1], hidden, int(y_train.max()) + 1, dtype=dtype)
    opt = build_optimizer(key, model.parameters())
    milestones = sorted({epochs // 2, (3 * epochs) // 4}) if milestones is None else list(milestones)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    n, r = len(y_train), len(seeds)
    diverged = torch.zeros(r, dtype=torch.bool)
    curves: dict[str, list] = {"test_acc": [], "test_loss": [], "train_loss": []}
    steps, start = 0, time.perf_counter()
    for epoch in range(epochs):
        if key.arm == "reference":
            opt.tr_restart()  # the release counts inner steps from each epoch's first batch
        order = batch_orders(seeds, n, epoch)
        loss_sum = torch.zeros(r, dtype=torch.float64)
        for begin in range(0, n, key.batch):
            idx = order[:, begin:begin + key.batch]
            losses = per_seed_loss(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            steps += 1
            loss_sum += losses.detach().double() * idx.shape[1]
        sched.step()
        with torch.no_grad():
            logits = model(x_test.expand(r, *x_test.shape))
            test_loss = per_seed_loss(logits, y_test.expand(r, -1)).double()
            test_acc = (logits.argmax(-1) == y_test).double().mean(1)
        train_loss = loss_sum / n
        diverged |= ~torch.isfinite(train_loss) | ~torch.isfinite(test_loss)
        nan = torch.full((r,), math.nan, dtype=torch.float64)
        curves["test_acc"].append(torch.where(diverged, nan, test_acc).tolist())
        curves["test_loss"].append(torch.where(diverged, nan, test_loss).tolist())
        curves["train_loss"].append(torch.where(diverged, nan, train_loss).tolist())
    return dict(key=key.text(), **dataclasses.asdict(key), seeds=list(seeds), epochs=epochs, steps=steps,
                wall_s=round(time.perf_counter() - start, 2), diverged=diverged.tolist(),
                final_test_acc=curves["test_acc"][-1], final_test_loss=curves["test_loss"][-1],
                final_train_loss=curves["train_loss"][-1], curves=curves,
                fingerprints=[fingerprint(model, i) for i in range(r)])


# ---------------------------------------------------------------------------------------------- the plan

@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of a sweep for one family: (batch, lr, lambda, S)."""

    family: str
    sweep: str
    value: float
    batch: int
    lr: float
    tr_lambda: float
    period: int

    def key(self, arm: str) -> RunKey:
        return RunKey.make(self.family, arm, self.batch, self.lr, self.tr_lambda, self.period)


def plan_settings(cfg: dict) -> list[Setting]:
    c = cfg["center"]
    out = []
    for fam in FAMILIES:
        lr0 = c["lr_sgd"] if fam == "sgd" else c["lr_adam"]
        base = dict(batch=c["batch"], lr=lr0, tr_lambda=c["tr_lambda"], period=c["period"])
        for lam in cfg["lambdas"]:
            out.append(Setting(fam, "lambda", lam, **{**base, "tr_lambda": lam}))
        for s in cfg["periods"]:
            out.append(Setting(fam, "S", s, **{**base, "period": s}))
        for b in cfg["batches"]:
            out.append(Setting(fam, "batch", b, **{**base, "batch": b}))
        for lr in (cfg["lrs_sgd"] if fam == "sgd" else cfg["lrs_adam"]):
            out.append(Setting(fam, "lr", lr, **{**base, "lr": lr}))
        extra = cfg.get("small_batch_lr", {})
        if fam in extra.get("families", ()):
            for b in extra["batches"]:
                for lr in (cfg["lrs_sgd"] if fam == "sgd" else cfg["lrs_adam"]):
                    out.append(Setting(fam, f"lr_b{b}", lr, **{**base, "lr": lr, "batch": b}))
    return out


def unique_keys(settings: Sequence[Setting]) -> list[RunKey]:
    keys = []
    for st in settings:
        for arm in ARMS:
            k = st.key(arm)
            if k not in keys:
                keys.append(k)
    # the slowest (small batch) first, so an estimate of the remaining time is pessimistic
    return sorted(keys, key=lambda k: k.batch)


def check_period_one(runs: dict[str, dict], settings: Sequence[Setting]) -> list[str]:
    """S = 1 must be the base optimizer exactly (k is always 0: no pull, no decay). Returns the checks made;
    raises AssertionError on a mismatch. Adam's reference arm is exempt (its eps placement is the release's)."""
    done = []
    for st in settings:
        if st.period != 1:
            continue
        base = runs.get(st.key("base").text())
        for arm in ("matched", "tr", "prox", "decay", "reference"):
            if arm == "reference" and st.family == "adam":
                continue
            run = runs.get(st.key(arm).text())
            if base is None or run is None:
                continue
            if run["fingerprints"] != base["fingerprints"]:
                raise AssertionError(f"S = 1 must equal the base optimizer bit for bit, but {run['key']} differs "
                                     f"from {base['key']}")
            done.append(f"{run['key']} == {base['key']}")
    return done


# ------------------------------------------------------------------------------------------- statistics

def values(run: dict, metric: str) -> list[float]:
    """Per-seed values of ``metric`` as floats (results.json holds NaN as null and inf as "inf")."""
    return [math.nan if v is None else float(v) for v in run[metric]]


def summarize(runs: dict[str, dict], settings: Sequence[Setting], metric: str = "final_test_acc") -> list[dict]:
    """One row per setting: every arm's mean [CI] and its paired difference to base, plus TR − matched."""
    rows = []
    for st in settings:
        base = runs.get(st.key("base").text())
        if base is None:
            continue
        row = dict(family=st.family, sweep=st.sweep, value=st.value, batch=st.batch, lr=st.lr,
                   tr_lambda=st.tr_lambda, period=st.period, arms={})
        for arm in ARMS:
            run = runs.get(st.key(arm).text())
            if run is None:
                continue
            v = values(run, metric)
            cell = dict(key=run["key"], **stats.bootstrap_ci(v))
            if arm != "base":
                cell["diff_to_base"] = stats.paired_difference(v, values(base, metric))
            row["arms"][arm] = cell
        tr, matched = runs.get(st.key("tr").text()), runs.get(st.key("matched").text())
        if tr is not None and matched is not None:
            row["tr_minus_matched"] = stats.paired_difference(values(tr, metric), values(matched, metric))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- reports

def _value_text(sweep: str, v: float) -> str:
    if sweep.startswith("lr"):
        return f"lr {v:g}"
    return {"lambda": f"λ {v:g}", "S": f"S {int(v)}", "batch": f"batch {int(v)}"}[sweep]


def _sweep_title(sweep: str) -> str:
    return f"lr sweep at batch {sweep[4:]}" if sweep.startswith("lr_b") else f"{sweep} sweep"


def row_cells(r: dict, sweep: str, *, strong, weak=lambda t: t, esc=lambda t: t, br: str = "<br>"):
    """One table row's texts: the setting, one cell per arm (mean [CI], then Δ to base), and TR − matched.
    ``strong``/``weak`` mark resolved/unresolved differences, ``esc`` escapes text (Markdown or HTML)."""
    setting = esc(f"{_value_text(sweep, r['value'])} (lr {r['lr']:g}, λ {r['tr_lambda']:g}, S {r['period']}, "
                  f"b {r['batch']})")
    cells = []
    for arm in ARMS:
        c = r["arms"].get(arm)
        if c is None:
            cells.append(("", ""))
            continue
        text = esc(stats.fmt_ci(c, 2, 100))
        if "diff_to_base" in c:
            d = c["diff_to_base"]
            dt = esc("Δ " + stats.fmt_ci(d, 2, 100, signed=True))
            text += br + (strong(dt) if d["resolved"] else weak(dt))
        cells.append((text, c["key"]))
    tm = r.get("tr_minus_matched")
    tmt = "" if tm is None else esc(stats.fmt_ci(tm, 2, 100, signed=True))
    if tm is not None:
        tmt = strong(tmt) if tm["resolved"] else weak(tmt)
    return setting, cells, tmt


def markdown_tables(rows: Sequence[dict], n_seeds: int, metric_title: str = "final test accuracy (%)") -> str:
    lines = [f"# Ablation tables: {metric_title}", "",
             f"Mean over {n_seeds} seeds [95% bootstrap interval]; below it Δ = arm − base on the same seeds "
             f"[interval], **bold** when the interval excludes 0 (resolved). \"(k diverged)\": k of {n_seeds} seeds "
             f"diverged (left out of the mean, counted here). The last column is TR − matched (the regulariser "
             f"beyond the smaller mean step). Run keys (family|arm|batch|lr|lambda|S) index results.json.", ""]
    for fam in FAMILIES:
        for sweep in SWEEPS:
            sel = [r for r in rows if r["family"] == fam and r["sweep"] == sweep]
            if not sel:
                continue
            lines += [f"## {FAMILY_TITLES[fam]}: {_sweep_title(sweep)}", "",
                      "| setting | " + " | ".join(ARM_TITLES[a] for a in ARMS) + " | TR − matched |",
                      "|---" * (len(ARMS) + 2) + "|"]
            for r in sel:
                setting, cells, tmt = row_cells(r, sweep, strong=lambda t: f"**{t}**")
                lines.append(f"| {setting} | " + " | ".join(t for t, _ in cells) + f" | {tmt} |")
            lines.append("")
    return "\n".join(lines)


def _save_figure(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def plot_sweeps(rows: Sequence[dict], out_dir: Path) -> list[str]:
    """One PNG per family: four panels (the sweeps), accuracy vs setting per arm with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for fam in FAMILIES:
        present = [sw for sw in SWEEPS if any(r["family"] == fam and r["sweep"] == sw for r in rows)]
        if not present:
            continue
        ncols = min(3, len(present))
        nrows = -(-len(present) // ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
        axes = grid.ravel()
        for ax in axes[len(present):]:
            ax.set_visible(False)
        for ax, sweep in zip(axes, present):
            sel = [r for r in rows if r["family"] == fam and r["sweep"] == sweep]
            xs = np.arange(len(sel))
            for j, arm in enumerate(ARMS):
                m = np.array([r["arms"][arm]["mean"] if arm in r["arms"] else np.nan for r in sel]) * 100
                lo = np.array([r["arms"][arm]["lo"] if arm in r["arms"] else np.nan for r in sel]) * 100
                hi = np.array([r["arms"][arm]["hi"] if arm in r["arms"] else np.nan for r in sel]) * 100
                off = (j - 2.5) * 0.07
                ax.errorbar(xs + off, m, yerr=[np.nan_to_num(m - lo), np.nan_to_num(hi - m)], marker="o", ms=3,
                            capsize=2, label=ARM_TITLES[arm])
            ax.set_xticks(xs, [_value_text(sweep, r["value"]).split(" ")[1] for r in sel])
            ax.set_xlabel({"lambda": "λ", "S": "S (period)", "batch": "batch size"}.get(sweep, "base lr"))
            ax.set_ylabel("final test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.set_title(_sweep_title(sweep))
        axes[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"{FAMILY_TITLES[fam]} on digits: mean over seeds, 95% bootstrap intervals")
        names.append(_save_figure(fig, out_dir / f"sweeps_{fam}.png"))
    return names


def plot_center_curves(runs: dict[str, dict], settings: Sequence[Setting], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for fam in FAMILIES:
        st = next((s for s in settings if s.family == fam and s.sweep == "lambda" and s.value == 0.1), None)
        if st is None:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for arm in ARMS:
            run = runs.get(st.key(arm).text())
            if run is None:
                continue
            for ax, metric in zip(axes, ("train_loss", "test_acc")):
                arr = np.array([[math.nan if v is None else v for v in ep] for ep in run["curves"][metric]])
                with np.errstate(all="ignore"):
                    mean = np.nanmean(arr, axis=1)
                ax.plot(np.arange(1, len(mean) + 1), mean * (100 if metric == "test_acc" else 1), label=ARM_TITLES[arm])
        axes[0].set_yscale("log")
        axes[0].set_ylabel("train loss (mean over seeds)")
        axes[1].set_ylabel("test accuracy (%)")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        fig.suptitle(f"{FAMILY_TITLES[fam]}, the paper's setting (λ {st.tr_lambda:g}, S {st.period}, batch {st.batch}, "
                     f"lr {st.lr:g}); lr x0.1 at the milestones")
        names.append(_save_figure(fig, out_dir / f"curves_{fam}.png"))
    return names


def _html_table(rows: Sequence[dict], fam: str, sweep: str) -> str:
    sel = [r for r in rows if r["family"] == fam and r["sweep"] == sweep]
    if not sel:
        return ""
    head = "".join(f"<th>{html.escape(ARM_TITLES[a])}</th>" for a in ARMS)
    out = [f"<h3>{html.escape(FAMILY_TITLES[fam])}: {_sweep_title(sweep)}</h3>",
           f"<table><tr><th>setting</th>{head}<th>TR − matched</th></tr>"]
    for r in sel:
        setting, cells, tmt = row_cells(r, sweep, strong=lambda t: f"<b>{t}</b>",
                                        weak=lambda t: f"<span class='un'>{t}</span>", esc=html.escape)
        tds = "".join(f"<td title='{html.escape(key)}'>{text}</td>" for text, key in cells)
        out.append(f"<tr><td>{setting}</td>{tds}<td>{tmt}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def write_index(results: dict, rows: Sequence[dict], images: Sequence[str], out_dir: Path,
                conclusion_html: str) -> None:
    meta, cfg = results["meta"], results["config"]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>TR ablation on digits</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:1em auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:12px;margin-bottom:1em}td,th{border:1px solid #ccc;"
             "padding:3px 5px;vertical-align:top}.un{color:#888}img{max-width:100%}code{background:#f4f4f4}"
             "</style></head><body>",
             "<h1>Does trajectory regularization help, and why? A paired ablation on real data</h1>",
             "<h2>Conclusion</h2>", conclusion_html,
             "<h2>What was run</h2>",
             f"<p><code>{html.escape(results['command'])}</code> &mdash; {meta['n_runs']} arm-runs x "
             f"{len(cfg['seeds'])} seeds, {meta['wall_s'] / 60:.1f} min wall on {html.escape(meta['machine'])}, "
             f"torch {html.escape(meta['torch'])}, finished {html.escape(meta.get('finished', ''))}.</p>",
             f"<p>Data: scikit-learn's digits (1,797 real 8x8 handwritten digits), fixed stratified split "
             f"{meta['train_size']} train / {meta['test_size']} test, normalised by the train mean and std. Model: MLP "
             f"64-{cfg['hidden']}-10 (ReLU), {cfg['epochs']} epochs, lr x0.1 at epochs {cfg['milestones']}, weight "
             f"decay 5e-4, SGD momentum 0.9, Adam betas (0.9, 0.999). All seeds train as one batched model "
             f"(exactly separate runs; the same initial weights and batch order for every arm of a seed). "
             f"S = 1 checks (bit-identical to the base optimizer): {len(results['period_one_checks'])} passed.</p>",
             "<p>Arms: " + "; ".join(f"<b>{html.escape(ARM_TITLES[a])}</b>" for a in ARMS) +
             ". Every cell: mean final test accuracy (%) over seeds [95% bootstrap interval], then Δ = arm − base "
             "on the same seeds [interval], <b>bold</b> when the interval excludes 0 (resolved), grey when it does "
             "not. Hover a cell for its run key in <a href='results.json'>results.json</a> (per-seed values, "
             "curves, weight fingerprints); the same tables in <a href='table.md'>table.md</a>.</p>"]
    for name in images:
        parts.append(f"<p><img src='{html.escape(name)}' alt='{html.escape(name)}'></p>")
    for fam in FAMILIES:
        for sweep in SWEEPS:
            parts.append(_html_table(rows, fam, sweep))
    parts.append("</body></html>")
    atomic_write_text(out_dir / "index.html", "\n".join(parts) + "\n")


def write_reports(results: dict, out_dir: Path) -> None:
    cfg = results["config"]
    settings = plan_settings(cfg)
    runs = {r["key"]: r for r in results["runs"]}
    rows = summarize(runs, settings)
    results["summary"] = rows
    atomic_write_text(out_dir / "table.md", markdown_tables(rows, len(cfg["seeds"])))
    images = plot_sweeps(rows, out_dir) + plot_center_curves(runs, settings, out_dir)
    for pattern in ("sweeps_*.png", "curves_*.png"):  # a plot of an earlier plan would sit beside the new ones
        for old in out_dir.glob(pattern):
            if old.name not in images:
                old.unlink()
    conclusion = out_dir / "conclusion.html"
    text = conclusion.read_text(encoding="utf-8") if conclusion.is_file() else \
        "<p>(No conclusion written yet: put it in conclusion.html next to this page and rerun with --report_only.)</p>"
    write_index(results, rows, images, out_dir, text)
    # 6 significant digits and no indentation: ~1.5 MB instead of ~4 MB for the full preset
    atomic_write_text(out_dir / "results.json", json.dumps(json_clean(results, significant=6), separators=(",", ":"))
                      + "\n")


# ---------------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="ablation")
    p.add_argument("--seeds", nargs="+", type=int, help="override the preset's seeds")
    p.add_argument("--epochs", type=int, help="override the preset's epochs (at least 2)")
    p.add_argument("--out", default="experiments/results/ablation", help="output folder")
    p.add_argument("--threads", type=positive_int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--report_only", action="store_true", help="rebuild table.md, plots and index.html from results.json")
    p.add_argument("--fresh", action="store_true",
                   help="replace an ablation with other settings in --out (its results and pages are removed first); "
                        "without it such a rerun is refused, and one with the same settings adds only the new runs")
    return p


class SweepError(ValueError):
    """--out holds an ablation that this invocation must not mix with; the message says what to do."""


#: What an ablation writes into --out (conclusion.html is the user's own text and is never removed).
OUTPUT_GLOBS = ("results.json", "table.md", "index.html", "sweeps_*.png", "curves_*.png")


def _resumable_runs(path: Path, cfg: dict, *, fresh: bool = False) -> dict[str, dict]:
    """Runs of an earlier invocation into the same --out with the same seeds, epochs, model and data: kept, so
    adding a sweep runs only the new arm-runs. An ablation with other settings (or a damaged results.json) is
    refused unless ``fresh``; with ``fresh`` its outputs are removed, so nothing of it stays beside the new one."""
    if fresh:
        for pattern in OUTPUT_GLOBS:
            for old in path.parent.glob(pattern):
                old.unlink()
        return {}
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
        config = old["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SweepError(f"--out {path.parent}: {path.name} is not an ablation's results ({type(exc).__name__}: "
                         f"{exc}): pass --fresh to replace it, or choose another --out") from None
    same = ("seeds", "epochs", "hidden", "max_train", "milestones")
    changed = [f"{k} {config.get(k)} (now {cfg.get(k)})" for k in same if config.get(k) != cfg.get(k)]
    if changed:
        raise SweepError(f"--out {path.parent} holds an ablation with other settings ({'; '.join(changed)}): pass "
                         f"--fresh to replace it (its results and pages are removed; conclusion.html is kept), or "
                         f"choose another --out")
    return {r["key"]: r for r in old.get("runs", [])}


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        path = out / "results.json"
        if not path.is_file():
            p.error(f"--report_only needs {path}: run the ablation into --out {out} first")
        write_reports(json.loads(path.read_text()), out)
        print(f"rebuilt {out / 'index.html'}")
        return 0
    cfg = json.loads(json.dumps(PRESETS[args.preset]))
    if args.seeds is not None:  # "is not None": a flag given as 0 is a value to check, never "not given"
        cfg["seeds"] = args.seeds
    if args.epochs is not None:
        if args.epochs < 2:
            p.error("--epochs must be at least 2 (the lr schedule cuts at 50% and 75%)")
        cfg["epochs"] = args.epochs
    if len(set(cfg["seeds"])) != len(cfg["seeds"]):
        p.error(f"--seeds lists a seed twice: {cfg['seeds']}")
    cfg["milestones"] = sorted({cfg["epochs"] // 2, (3 * cfg["epochs"]) // 4})
    torch.set_num_threads(args.threads)
    try:
        data = load_digits_tensors(cfg["max_train"])
    except Exception as exc:  # DatasetNotFoundError: scikit-learn missing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = plan_settings(cfg)
    keys = unique_keys(settings)
    try:
        done = _resumable_runs(out / "results.json", cfg, fresh=args.fresh)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m experiments.ablation " + " ".join(argv if argv is not None else sys.argv[1:])
    if out.is_absolute():  # a committed page names no folder of the machine that made it
        command = command.replace(str(out), "$OUT")
    results: dict[str, Any] = dict(command=command, config=cfg, runs=[])
    results["runs"] = [done[k.text()] for k in keys if k.text() in done]
    todo = [k for k in keys if k.text() not in done]
    previous_s = json.loads((out / "results.json").read_text()).get("meta", {}).get("wall_s", 0.0) if done else 0.0
    start = time.perf_counter()
    print(f"{len(keys)} arm-runs x {len(cfg['seeds'])} seeds -> {out} ({len(keys) - len(todo)} already there)",
          flush=True)
    for i, key in enumerate(todo, 1):
        run = train_arm(key, cfg["seeds"], data, epochs=cfg["epochs"], hidden=cfg["hidden"],
                        milestones=cfg["milestones"])
        results["runs"].append(run)
        # after every run, so an interrupted ablation resumes (the pages are written at the end)
        atomic_write_text(out / "results.json", json.dumps(json_clean({**results, "meta": {
            "wall_s": previous_s + time.perf_counter() - start}}, significant=6), separators=(",", ":")) + "\n")
        acc = stats.bootstrap_ci(values(run, "final_test_acc"))
        print(f"[{i}/{len(todo)}] {run['key']}: test acc {stats.fmt_ci(acc, 2, 100)}, {run['steps']} steps, "
              f"{run['wall_s']:.1f}s", flush=True)
    runs = {r["key"]: r for r in results["runs"]}
    results["period_one_checks"] = check_period_one(runs, settings)
    results["meta"] = dict(torch=torch.__version__, python=platform.python_version(), threads=args.threads,
                           machine=f"{platform.machine()} CPU, {args.threads} torch thread(s)",
                           train_size=len(data[1]), test_size=len(data[3]), n_runs=len(keys),
                           wall_s=round(previous_s + time.perf_counter() - start, 1),
                           finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    write_reports(results, out)
    print(f"wrote {out / 'index.html'}, table.md, results.json and the plots "
          f"({results['meta']['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
