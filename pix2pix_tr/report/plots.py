"""Loss curves from the training log: ``checkpoints/NAME/loss_log.csv`` -> ``loss_curve.png``.

The CSV has a header row. The x axis is the first column found among ``total_iters``, ``step``,
``global_step``, ``iteration``, ``iters``, ``iter``, ``epoch`` (else the row number). Loss columns are the
numeric columns whose name starts with ``G_``/``D_`` or contains ``loss`` (pix2pix logs ``G_GAN``, ``G_L1``,
``D_real``, ``D_fake``); if there are none, every other numeric column that is not a counter, a time or a
learning rate. Learning-rate columns (names containing ``lr``) go in a second, smaller panel. Generator and
discriminator losses are on separate panels because ``G_L1`` (weighted by ``lambda_L1`` = 100) dwarfs the
GAN terms.

The figure is drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no display needed)
and written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from pix2pix_tr.io import atomic_write_bytes

__all__ = ["plot_losses", "read_loss_log"]

_X_CANDIDATES = ("total_iters", "step", "global_step", "iteration", "iters", "iter", "epoch")
_NOT_LOSS = {"epoch", "epoch_iter", "iters", "iter", "total_iters", "step", "global_step", "iteration", "time", "t_data",
             "t_comp", "seconds", "wall", "wall_time", "timestamp", "images", "samples", "rank"}


def read_loss_log(csv_path: str | os.PathLike) -> tuple[list[str], dict[str, list[float]]]:
    """Read the CSV into ``(header, {column: values})``; non-numeric cells become NaN."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"loss log {csv_path} does not exist; it is written by train.py during training")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return [], {}
    header = [h.strip() for h in rows[0]]
    cols: dict[str, list[float]] = {h: [] for h in header}
    for row in rows[1:]:
        if not row or len(row) < len(header):
            continue  # blank line or a row cut short by an interrupted write
        for h, cell in zip(header, row):
            try:
                cols[h].append(float(cell))
            except ValueError:
                cols[h].append(math.nan)
    return header, cols


def _is_numeric(values: list[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def plot_losses(csv_path: str | os.PathLike, png_path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Plot the losses of ``csv_path`` into ``png_path`` and return the png path.

    A log with a header but no rows yet gives a figure that says so (the training loop may call this early).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    header, cols = read_loss_log(csv_path)
    n = max((len(v) for v in cols.values()), default=0)
    xname = next((c for c in _X_CANDIDATES if c in cols and _is_numeric(cols[c])), None)
    x = cols[xname] if xname else list(range(n))

    numeric = [h for h in header if h != xname and _is_numeric(cols[h])]
    lr_cols = [h for h in numeric if "lr" in h.lower()]
    losses = [h for h in numeric if h not in lr_cols and (h.startswith(("G_", "D_")) or "loss" in h.lower())]
    if not losses:
        losses = [h for h in numeric if h not in lr_cols and h.lower() not in _NOT_LOSS]
    g_cols = [h for h in losses if h.startswith("G")]
    d_cols = [h for h in losses if h not in g_cols]
    panels = [p for p in (g_cols, d_cols) if p]
    has_lr = bool(lr_cols)

    n_panels = max(1, len(panels)) + has_lr
    ratios = [3] * max(1, len(panels)) + ([1] if has_lr else [])
    fig = Figure(figsize=(8, 2.2 + 2.4 * sum(ratios) / 3), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    fig.suptitle(title or f"losses ({Path(csv_path).parent.name})")
    if n == 0 or not losses:
        axes[0].text(0.5, 0.5, "no losses logged yet", ha="center", va="center", transform=axes[0].transAxes)
    for ax, cols_here in zip(axes, panels):
        for h in cols_here:
            ax.plot(x, cols[h], label=h, linewidth=1)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylabel("loss")
    if has_lr:
        ax = axes[-1]
        for h in lr_cols:
            ax.plot(x, cols[h], label=h, linewidth=1)
        ax.set_ylabel("lr")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(xname or "row")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png_path = Path(png_path)
    atomic_write_bytes(png_path, buf.getvalue())
    return png_path
