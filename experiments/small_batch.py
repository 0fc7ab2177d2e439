"""Small-batch image classification: SGD/Adam against TRSGD/TRAdam, the paper's Tables 1, 4, 5 and Figures 2, 3.

The paper's protocol (Zhang et al., IJCAI 2019, section 5.1), every setting a flag here:

* CIFAR-10 / CIFAR-100, standard augmentation (4-pixel padded random crop + horizontal flip);
* ResNet18, ResNet101, DenseNet121 in their CIFAR form (3x3 stem, no max-pool);
* 200 epochs; SGD-family lr 0.1, divided by 10 at epochs 100 and 150, momentum 0.9; Adam-family lr 1e-3
  (same step schedule); TR settings lambda = 0.1, S = 10; batch 8 (Table 1), 2/8/32/128 (Table 4),
  S in 1/5/10/20/50 (Table 5); several seeds.

Budget: a run is a fixed number of **epochs** (as in the paper), so every optimizer and batch size sees the same
number of training samples and gradient evaluations; batch 2 therefore takes 64x more optimizer steps than
batch 128. Within one seed every optimizer starts from the same initial weights and sees the same batches in the
same order (paired comparison), and the table reports the paired difference next to the means.

Fairness note: with ``tr_inner_decay`` (the paper's TRAlgo) the inner step size is lr/(k+1), k = 0..S-1, so the
*mean* step-size factor over a period is H_S / S (0.29 for S = 10): TRSGD at lr 0.1 moves with smaller steps than
SGD at lr 0.1. Add the control ``sgd@0.029`` (any optimizer accepts ``@LR``) to see how much of a difference is
the smaller step rather than the regulariser.

Outputs in ``--out``: ``results.json`` (settings + one record per run with per-epoch curves; rewritten after every
run, and an interrupted sweep resumes where it stopped), ``table.md`` (mean +- std over seeds, shaped like the
paper's tables: one row per model / batch size / S, one column per optimizer), ``curves_*.png`` (train loss and
test accuracy per epoch, mean over seeds with min-max band: Figures 2 and 3) and, when several batch sizes were
run, ``accuracy_vs_batch.png``.

Examples::

    python -m experiments.small_batch --preset offline --out experiments/results/offline_batch_sweep
    python -m experiments.small_batch --preset table4 --data_dir ~/data --out runs/table4 --device cuda
    python -m experiments.small_batch --dataset cifar100 --data_dir ~/data --models resnet18 \
        --optimizers sgd trsgd sgd@0.029 --batch_sizes 8 --seeds 0 1 2 --out runs/c100
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import io
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from experiments.common import base_of, check_optimizer_name, is_tr, make_optimizer, parse_optimizer
from experiments.data import BatchLoader, DatasetError, ImageSet, load_dataset
from experiments.models import MODELS, build_model
from pix2pix_tr.cli import device_problem, json_clean, non_negative_float, positive_float, positive_int
from pix2pix_tr.io import atomic_open, atomic_write_text
from pix2pix_tr.optim._tr import TR_MODES

__all__ = [
    "PRESETS", "RunSpec", "Settings", "build_optimizer", "parse_optimizer", "is_tr", "base_of", "run_one",
    "run_sweep", "markdown_table", "plot_curves", "main", "build_parser", "SweepError",
]


class SweepError(ValueError):
    """The output folder holds results that cannot be resumed; the message says what to do."""

#: Named configurations; any flag given on the command line overrides the preset's value.
PRESETS: dict[str, dict[str, Any]] = {
    "table1": dict(dataset="cifar10", models=["resnet18", "resnet101", "densenet121"],
                   optimizers=["sgd", "trsgd", "adam", "tradam"], batch_sizes=[8], seeds=[0, 1, 2, 3, 4]),
    "table4": dict(dataset="cifar10", models=["resnet18"], optimizers=["sgd", "trsgd"],
                   batch_sizes=[2, 8, 32, 128], seeds=[0, 1, 2, 3, 4]),
    "table5": dict(dataset="cifar10", models=["resnet18"], optimizers=["sgd", "trsgd"], batch_sizes=[8],
                   tr_periods=[1, 5, 10, 20, 50], seeds=[0, 1, 2, 3, 4]),
    # What fits a shared 2-core CPU in ~15-20 minutes (the numbers in experiments/README.md).
    "offline": dict(dataset="synthetic", models=["smallcnn"], optimizers=["sgd", "trsgd"],
                    batch_sizes=[2, 8, 32, 128], seeds=[0, 1, 2], epochs=10, synthetic_train=1500,
                    synthetic_test=1000, threads=1),
    # Seconds: for tests and for checking an installation.
    "smoke": dict(dataset="synthetic", models=["smallcnn"], optimizers=["sgd", "trsgd"], batch_sizes=[8, 32],
                  seeds=[0, 1], epochs=2, synthetic_train=160, synthetic_test=80, synthetic_size=12, width=8,
                  threads=1),
}

_SGD_NAMES = {"sgd", "trsgd", "tr-sgd"}


# ------------------------------------------------------------------------------------------- optimizers

def default_lr(name: str, lr_sgd: float, lr_adaptive: float) -> float:
    """The paper's learning rates: 0.1 for the SGD family, 1e-3 for Adam (used for every other base too)."""
    return lr_sgd if base_of(name) == "sgd" else lr_adaptive


def build_optimizer(spec: str, params: Iterable[torch.nn.Parameter], *, lr_sgd: float = 0.1,
                    lr_adaptive: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
                    tr_lambda: float = 0.1, tr_period: int = 10, tr_mode: str = "paper",
                    tr_inner_decay: bool = True) -> torch.optim.Optimizer:
    """The optimizer named by ``spec`` (see :func:`experiments.common.parse_optimizer`) with the experiment's
    hyper-parameters: the lr from ``@LR`` or the paper's default for its family, built by
    :func:`experiments.common.make_optimizer` (``sgd``/``trsgd`` get ``momentum``; every optimizer gets coupled
    ``weight_decay``; TR ones get the ``tr_*`` settings; ``tr-<name>`` wraps ``torch.optim.<Name>``)."""
    name, lr = parse_optimizer(spec)
    return make_optimizer(name, params, lr=default_lr(name, lr_sgd, lr_adaptive) if lr is None else lr,
                          momentum=momentum, weight_decay=weight_decay, tr_lambda=tr_lambda, tr_period=tr_period,
                          tr_inner_decay=tr_inner_decay, tr_mode=tr_mode)


# ------------------------------------------------------------------------------------------ one run

@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What varies between runs of a sweep. ``tr_period`` is None for optimizers without TR."""

    dataset: str
    model: str
    optimizer: str
    batch_size: int
    tr_period: int | None
    seed: int

    def key(self) -> str:
        s = "-" if self.tr_period is None else str(self.tr_period)
        return f"{self.dataset}|{self.model}|{self.optimizer}|b{self.batch_size}|S{s}|seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What is shared by every run of a sweep (recorded in results.json; a resumed sweep must match it)."""

    epochs: int = 200
    milestones: tuple[int, ...] | None = None  # None: at 50% and 75% of the epochs (100, 150 of 200)
    lr_gamma: float = 0.1
    lr_sgd: float = 0.1
    lr_adaptive: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    tr_lambda: float = 0.1
    tr_mode: str = "paper"
    tr_inner_decay: bool = True
    augment: bool | None = None  # None: on for CIFAR, off for the synthetic set and digits
    tr_restart_each_epoch: bool = False  # the authors' schedule: a new TR cycle at every epoch start
    width: int = 16
    synthetic_train: int = 4000
    synthetic_test: int = 2000
    synthetic_size: int = 16
    max_train: int | None = None
    max_test: int | None = None
    eval_batch_size: int = 500

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(set(self.milestones))
        return sorted({self.epochs // 2, (3 * self.epochs) // 4})  # deduplicated: a short run decays once


def _evaluate(model: nn.Module, loader: BatchLoader) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss_sum / n, correct / n


def run_one(spec: RunSpec, settings: Settings, train: ImageSet, test: ImageSet, *,
            device: str | torch.device = "cpu", log=None) -> dict[str, Any]:
    """Train one model with one optimizer; returns the run's record (config, per-epoch curves, final numbers).

    A run whose training loss becomes non-finite stops there and is recorded with ``diverged: true`` and its
    last test accuracy (an honest outcome of that optimizer at that step size, not an error).
    """
    device = torch.device(device)
    augment = settings.augment if settings.augment is not None else spec.dataset.startswith("cifar")
    torch.manual_seed(spec.seed)  # same initial weights for every optimizer of this seed
    model = build_model(spec.model, train.num_classes, width=settings.width).to(device)
    optimizer = build_optimizer(
        spec.optimizer, model.parameters(), lr_sgd=settings.lr_sgd, lr_adaptive=settings.lr_adaptive,
        momentum=settings.momentum, weight_decay=settings.weight_decay, tr_lambda=settings.tr_lambda,
        tr_period=spec.tr_period or 1, tr_mode=settings.tr_mode, tr_inner_decay=settings.tr_inner_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=settings.resolved_milestones(), gamma=settings.lr_gamma)
    train_loader = BatchLoader(train, spec.batch_size, shuffle=True, augment=augment, seed=spec.seed,
                               device=device)
    test_loader = BatchLoader(test, settings.eval_batch_size, shuffle=False, device=device)
    curves: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr")}
    steps, diverged, start = 0, False, time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        train_loader.set_epoch(epoch)
        if settings.tr_restart_each_epoch and hasattr(optimizer, "tr_restart"):
            optimizer.tr_restart()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in train_loader:
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            value = loss.item()
            if not math.isfinite(value):
                diverged = True
                break
            loss_sum += value * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        curves["lr"].append(optimizer.param_groups[0]["lr"])
        scheduler.step()
        curves["train_loss"].append(loss_sum / max(seen, 1) if not diverged else float("nan"))
        curves["train_acc"].append(correct / max(seen, 1))
        test_loss, test_acc = _evaluate(model, test_loader)
        curves["test_loss"].append(test_loss if math.isfinite(test_loss) else float("nan"))
        curves["test_acc"].append(test_acc)
        if log is not None:
            log(f"  {spec.key()} epoch {epoch + 1}/{settings.epochs} train_loss {curves['train_loss'][-1]:.4f} "
                f"test_acc {test_acc:.4f}")
        if diverged:
            break
    return dict(
        **dataclasses.asdict(spec), key=spec.key(), final_test_acc=curves["test_acc"][-1],
        best_test_acc=max(curves["test_acc"]), final_train_loss=curves["train_loss"][-1],
        epochs_run=len(curves["test_acc"]), steps=steps, diverged=diverged,
        wall_s=round(time.perf_counter() - start, 2), curves=curves)


# ------------------------------------------------------------------------------------------- sweeps

def sweep_specs(dataset: str, models: Sequence[str], optimizers: Sequence[str], batch_sizes: Sequence[int],
                tr_periods: Sequence[int], seeds: Sequence[int]) -> list[RunSpec]:
    """Every run of the sweep; optimizers without TR are run once per (model, batch, seed), not once per S."""
    specs = []
    for model in models:
        for batch in batch_sizes:
            for seed in seeds:
                for opt in optimizers:
                    for period in (tr_periods if is_tr(opt) else [None]):
                        specs.append(RunSpec(dataset, model, opt, batch, period, seed))
    return specs


def run_sweep(specs: Sequence[RunSpec], settings: Settings, out_dir: str | Path, *, data_dir: str | None = None,
              data_seed: int = 0, device: str = "cpu", fresh: bool = False, log=print,
              verbose: bool = False) -> dict[str, Any]:
    """Run (or resume) every spec, writing ``results.json`` after each run, then ``table.md`` and the plots.

    Returns the results dictionary. Runs already in ``out_dir/results.json`` (same key, same settings) are kept
    and not rerun, so an interrupted sweep continues where it stopped.
    """
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    settings_dict = json_clean(dataclasses.asdict(settings))
    if not settings_dict["tr_restart_each_epoch"]:  # sweeps recorded before the flag existed still resume
        del settings_dict["tr_restart_each_epoch"]
    runs: dict[str, dict] = {}
    if fresh:  # replace cleanly: nothing of the old sweep stays beside the new one
        for pattern in ("results.json", "table.md", "curves_*.png", "accuracy_vs_batch.png"):
            for old in out_dir.glob(pattern):
                old.unlink()
    if results_path.exists() and not fresh:
        try:
            old = json.loads(results_path.read_text())
        except json.JSONDecodeError as exc:
            raise SweepError(f"{results_path} is not valid JSON ({exc}); move it away or pass --fresh") from exc
        if old.get("settings") != settings_dict:
            changed = sorted(k for k in settings_dict if old.get("settings", {}).get(k) != settings_dict[k])
            raise SweepError(f"{results_path} holds a sweep with different settings ({', '.join(changed)}); "
                             f"use another --out, or --fresh to replace it")
        runs = {r["key"]: r for r in old.get("runs", [])}
    dataset = specs[0].dataset if specs else "synthetic"
    train, test = load_dataset(dataset, data_dir, synthetic_train=settings.synthetic_train,
                               synthetic_test=settings.synthetic_test, synthetic_size=settings.synthetic_size,
                               data_seed=data_seed)
    train, test = train.subset(settings.max_train), test.subset(settings.max_test)
    meta = dict(torch=torch.__version__, python=platform.python_version(), device=str(device),
                threads=torch.get_num_threads(), train_size=len(train), test_size=len(test),
                data=train.name)
    results = dict(settings=settings_dict, meta=meta, runs=[])
    todo = [s for s in specs if s.key() not in runs]
    log(f"{len(specs)} runs ({len(specs) - len(todo)} already in {results_path}), "
        f"{len(train)} train / {len(test)} test images")
    for i, spec in enumerate(todo, 1):
        record = run_one(spec, settings, train, test, device=device, log=log if verbose else None)
        runs[spec.key()] = json_clean(record)
        results["runs"] = [runs[s.key()] for s in specs if s.key() in runs]
        with atomic_open(results_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
        log(f"[{i}/{len(todo)}] {spec.key()}: final test acc {record['final_test_acc']:.4f}"
            f"{' (diverged)' if record['diverged'] else ''}, {record['steps']} steps, {record['wall_s']:.1f}s")
    results["runs"] = [runs[s.key()] for s in specs if s.key() in runs]
    results["meta"]["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with atomic_open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    write_reports(results, out_dir)
    return results


# ------------------------------------------------------------------------------------------ reports

def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [float(v) for v in values if v is not None]  # results.json: NaN is null, inf is "inf"
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pct(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{100 * mean:.2f} ± {100 * std:.2f} (n={n})"


def _row_keys(runs: Sequence[dict]) -> list[tuple]:
    """(dataset, model, batch, S) rows: S runs over the TR periods used ('-' when no TR optimizer ran)."""
    periods = sorted({r["tr_period"] for r in runs if r["tr_period"] is not None})
    rows = []
    for r in runs:
        for period in (periods or [None]):
            row = (r["dataset"], r["model"], r["batch_size"], period)
            if row not in rows:
                rows.append(row)
    return sorted(rows, key=lambda t: (t[0], MODELS.index(t[1]) if t[1] in MODELS else 99, t[2],
                                       -1 if t[3] is None else t[3]))


def _cell_runs(runs: Sequence[dict], row: tuple, optimizer: str) -> list[dict]:
    dataset, model, batch, period = row
    return [r for r in runs if r["dataset"] == dataset and r["model"] == model and r["batch_size"] == batch
            and r["optimizer"] == optimizer and (r["tr_period"] == period or not is_tr(optimizer))]


def markdown_table(results: dict[str, Any], metric: str = "final_test_acc") -> str:
    """The paper-style table: one row per (dataset, model, batch, S), one column per optimizer (mean ± std over
    seeds, in %), and for each TR optimizer whose plain base also ran, the paired difference TR - base over the
    seeds both ran. Diverged runs count with their last accuracy and are flagged with †."""
    runs = results["runs"]
    optimizers = list(dict.fromkeys(r["optimizer"] for r in runs))
    pairs = [(o, base_of(o)) for o in optimizers if is_tr(o) and base_of(o) in optimizers]
    rows = _row_keys(runs)
    vary = {name: len({row[i] for row in rows}) > 1 for i, name in enumerate(("dataset", "model", "batch", "S"))}
    lead = [n for n in ("dataset", "model", "batch", "S") if vary[n] or n in ("model", "batch")]
    if any(r["tr_period"] is not None for r in runs) and "S" not in lead:
        lead.append("S")
    header = lead + [o.upper() for o in optimizers] + \
        [f"Δ {t.upper()} − {b.upper()} (paired)" for t, b in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        values = dict(zip(("dataset", "model", "batch", "S"), row))
        cells = [str("—" if values[n] is None else values[n]) for n in lead]
        for opt in optimizers:
            sel = _cell_runs(runs, row, opt)
            mean, std = _mean_std([r[metric] for r in sel])
            dagger = " †" * any(r["diverged"] for r in sel)
            cells.append(_pct(mean, std, len(sel)) + dagger)
        for tr_opt, base in pairs:
            a = {r["seed"]: r[metric] for r in _cell_runs(runs, row, tr_opt)}
            b = {r["seed"]: r[metric] for r in _cell_runs(runs, row, base)}
            diffs = [a[s] - b[s] for s in sorted(a) if s in b and a[s] is not None and b[s] is not None]
            mean, std = _mean_std(diffs)
            cells.append("—" if not diffs else f"{round(100 * mean, 2) + 0.0:+.2f} ± {100 * std:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _describe(results: dict[str, Any]) -> str:
    s, m = results["settings"], results["meta"]
    ms = s["milestones"] or [s["epochs"] // 2, 3 * s["epochs"] // 4]
    return (f"{m['data']}: {m['train_size']} train / {m['test_size']} test images; {s['epochs']} epochs; "
            f"lr SGD-family {s['lr_sgd']}, others {s['lr_adaptive']}, x{s['lr_gamma']} at epochs "
            f"{', '.join(map(str, ms))}; momentum {s['momentum']}; weight decay {s['weight_decay']}; "
            f"TR lambda {s['tr_lambda']}, mode {s['tr_mode']}, inner decay {s['tr_inner_decay']}; "
            f"torch {m['torch']}, {m['threads']} thread(s) on {m['device']}.")


def write_reports(results: dict[str, Any], out_dir: str | Path) -> None:
    """``table.md`` (final and best test accuracy tables) and the PNG curves, from a results dictionary."""
    out_dir = Path(out_dir)
    runs = results["runs"]
    total = sum(r["wall_s"] for r in runs)
    text = ["# Small-batch classification: test accuracy (%)", "", _describe(results), "",
            "## Final test accuracy (after the last epoch), mean ± std over seeds", "",
            markdown_table(results, "final_test_acc"),
            "## Best test accuracy over epochs, mean ± std over seeds", "",
            markdown_table(results, "best_test_acc"),
            "Δ columns: TR minus its plain base on the same seed (same initial weights, same batches), "
            "mean ± std over seeds. † = at least one run diverged (non-finite loss) and counts with its last "
            "accuracy.", "",
            f"{len(runs)} runs, {total / 60:.1f} minutes of training in total.", ""]
    atomic_write_text(out_dir / "table.md", "\n".join(text))
    written = {p.name for p in plot_curves(results, out_dir)}
    for pattern in ("curves_*.png", "accuracy_vs_batch.png"):  # plots of rows this sweep no longer has
        for old in out_dir.glob(pattern):
            if old.name not in written:
                old.unlink()


def _save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def plot_curves(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """One ``curves_{dataset}_{model}_b{batch}_S{S}.png`` per table row (train loss and test accuracy per epoch,
    one line per optimizer, mean over seeds with a min-max band) and ``accuracy_vs_batch.png`` when the sweep
    has several batch sizes. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir = Path(out_dir)
    runs = results["runs"]
    optimizers = list(dict.fromkeys(r["optimizer"] for r in runs))
    written = []
    for row in _row_keys(runs):
        dataset, model, batch, period = row
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for opt in optimizers:
            sel = _cell_runs(runs, row, opt)
            if not sel:
                continue
            for ax, key in zip(axes, ("train_loss", "test_acc")):
                length = max(len(r["curves"][key]) for r in sel)
                table = np.full((len(sel), length), np.nan)
                for i, r in enumerate(sel):
                    vals = [np.nan if v is None else v for v in r["curves"][key]]
                    table[i, :len(vals)] = vals
                epochs = np.arange(1, length + 1)
                with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
                    __import__("warnings").simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(table, 0)
                    lo, hi = np.nanmin(table, 0), np.nanmax(table, 0)
                label = f"{opt.upper()} (n={len(sel)})"
                line, = ax.plot(epochs, mean, label=label, linewidth=1.6)
                ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
        axes[0].set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
        axes[0].set_yscale("log")
        axes[1].set(title="test accuracy", xlabel="epoch", ylabel="accuracy")
        axes[1].legend(loc="lower right")
        s = "-" if period is None else period
        fig.suptitle(f"{dataset} {model}, batch {batch}, S={s} (mean over seeds, band = min-max)")
        path = out_dir / f"curves_{dataset}_{model}_b{batch}_S{s}.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    batches = sorted({r["batch_size"] for r in runs})
    if len(batches) > 1:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for (dataset, model, period) in dict.fromkeys((r[0], r[1], r[3]) for r in _row_keys(runs)):
            for opt in optimizers:
                means, stds, xs = [], [], []
                for b in batches:
                    sel = _cell_runs(runs, (dataset, model, b, period), opt)
                    if sel:
                        m, sd = _mean_std([r["final_test_acc"] for r in sel])
                        xs.append(b), means.append(m), stds.append(sd)
                if xs:
                    tag = f"{opt.upper()}" + (f" S={period}" if period is not None and is_tr(opt) else "")
                    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"{model} {tag}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set(xlabel="batch size", ylabel="final test accuracy", title="accuracy vs batch size (mean ± std)")
        ax.legend()
        path = out_dir / "accuracy_vs_batch.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.small_batch",
        description="Small-batch classification: plain vs trajectory-regularized optimizers (paper Tables 1, 4, "
                    "5). Defaults are the paper's protocol; --preset fills in one of its tables or the offline "
                    "CPU sweep.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration "
                   "(flags given explicitly still win)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "synthetic", "digits"],
                   help="digits: scikit-learn's 1,797 handwritten 8x8 digits (real data in its wheel, offline)")
    p.add_argument("--data_dir", help="folder holding cifar-10-batches-py/ or cifar-100-python/ (never downloaded)")
    p.add_argument("--models", nargs="+", default=["resnet18"], choices=list(MODELS))
    p.add_argument("--optimizers", nargs="+", default=["sgd", "trsgd"],
                   help="sgd, trsgd, adam, tradam, any torch.optim name, tr-<name> (TrajectoryRegularized around "
                        "it); append @LR to override the learning rate, e.g. sgd@0.029")
    p.add_argument("--batch_sizes", nargs="+", type=positive_int, default=[8])
    p.add_argument("--tr_periods", nargs="+", type=positive_int, default=[10], help="S values for the TR optimizers")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=positive_int, default=200)
    p.add_argument("--milestones", nargs="*", type=positive_int, default=None,
                   help="epochs where lr is multiplied by --lr_gamma (default: 50%% and 75%% of --epochs)")
    p.add_argument("--lr_gamma", type=positive_float, default=0.1)
    p.add_argument("--lr_sgd", type=positive_float, default=0.1, help="initial lr of sgd/trsgd/tr-sgd")
    p.add_argument("--lr_adaptive", type=positive_float, default=1e-3,
                   help="initial lr of adam/tradam and other bases")
    p.add_argument("--momentum", type=non_negative_float, default=0.9)
    p.add_argument("--weight_decay", type=non_negative_float, default=5e-4)
    p.add_argument("--tr_lambda", type=non_negative_float, default=0.1)
    p.add_argument("--tr_mode", choices=TR_MODES, default="paper")
    p.add_argument("--no_tr_inner_decay", action="store_true", help="inner step size lr instead of lr/(k+1)")
    p.add_argument("--tr_restart_each_epoch", action="store_true",
                   help="a new TR cycle (k = 0, new anchor) at every epoch start, as the authors' code does")
    p.add_argument("--augment", choices=["auto", "on", "off"], default="auto",
                   help="CIFAR crop+flip augmentation (auto: on for CIFAR, off for synthetic and digits)")
    p.add_argument("--width", type=positive_int, default=16, help="channel width of smallcnn")
    p.add_argument("--synthetic_train", type=positive_int, default=4000)
    p.add_argument("--synthetic_test", type=positive_int, default=2000)
    p.add_argument("--synthetic_size", type=positive_int, default=16)
    p.add_argument("--data_seed", type=int, default=0, help="seed of the synthetic data set (not of the runs)")
    p.add_argument("--max_train", type=positive_int, help="use only the first N training images")
    p.add_argument("--max_test", type=positive_int, help="use only the first N test images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default="experiments/results/small_batch", help="output folder")
    p.add_argument("--fresh", action="store_true",
                   help="replace the sweep in --out (its results, table and curves are removed first); without it a "
                        "rerun with the same settings resumes and one with other settings is refused")
    p.add_argument("--verbose", action="store_true", help="print every epoch")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Everything a run could refuse is refused here, before anything is written (one sentence, exit 2): the
    values that argparse's types do not cover, and every optimizer of the sweep built once with its settings."""
    for flag in ("batch_sizes", "tr_periods", "epochs", "max_train", "max_test", "width", "synthetic_train",
                 "synthetic_test", "synthetic_size", "threads"):  # the presets' values too, not only the flags'
        values = getattr(args, flag)
        bad = [v for v in (values if isinstance(values, list) else [values]) if v is not None and v < 1]
        if bad:
            p.error(f"--{flag} must be at least 1, got {' '.join(map(str, bad))}")
    for spec in args.optimizers:
        try:
            check_optimizer_name(spec)
        except ValueError as exc:
            p.error(f"--optimizers: {exc}")
    probe = torch.zeros(1, requires_grad=True)
    for spec in args.optimizers:
        for period in (args.tr_periods if is_tr(spec) else [1]):
            try:
                build_optimizer(spec, [probe], lr_sgd=args.lr_sgd, lr_adaptive=args.lr_adaptive,
                                momentum=args.momentum, weight_decay=args.weight_decay, tr_lambda=args.tr_lambda,
                                tr_period=period, tr_mode=args.tr_mode, tr_inner_decay=not args.no_tr_inner_decay)
            except (ValueError, TypeError) as exc:
                p.error(f"--optimizers {spec} cannot be built with these settings: {exc}")
    problem = device_problem(args.device)
    if problem is not None:
        p.error(problem)
    if args.dataset.startswith("cifar") and not args.data_dir:
        p.error(f"--dataset {args.dataset} needs --data_dir, the folder holding the python-pickle CIFAR files "
                f"(nothing is downloaded); or use --dataset synthetic or digits")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    first, _ = p.parse_known_args(argv)
    if first.preset:
        p.set_defaults(**PRESETS[first.preset])
    args = p.parse_args(argv)
    _check(p, args)
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        epochs=args.epochs, milestones=None if args.milestones is None else tuple(args.milestones),
        lr_gamma=args.lr_gamma, lr_sgd=args.lr_sgd, lr_adaptive=args.lr_adaptive, momentum=args.momentum,
        weight_decay=args.weight_decay, tr_lambda=args.tr_lambda, tr_mode=args.tr_mode,
        tr_inner_decay=not args.no_tr_inner_decay, tr_restart_each_epoch=args.tr_restart_each_epoch,
        augment=None if args.augment == "auto" else args.augment == "on", width=args.width,
        synthetic_train=args.synthetic_train, synthetic_test=args.synthetic_test,
        synthetic_size=args.synthetic_size, max_train=args.max_train, max_test=args.max_test)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = sweep_specs(args.dataset, args.models, args.optimizers, args.batch_sizes, args.tr_periods, args.seeds)
    try:
        run_sweep(specs, settings_from_args(args), args.out, data_dir=args.data_dir, data_seed=args.data_seed,
                  device=args.device, fresh=args.fresh, verbose=args.verbose)
    except (DatasetError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / 'results.json'}, {Path(args.out) / 'table.md'} and the curves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
