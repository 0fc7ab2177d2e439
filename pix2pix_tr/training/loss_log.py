"""The machine-readable loss log ``checkpoints/NAME/loss_log.csv``.

One row every ``--print_freq`` iterations and at the end of every epoch, with the losses averaged over the
iterations since the previous row::

    epoch,epoch_iter,total_iters,G_GAN,G_L1,D_real,D_fake,lr_G,lr_D,time

(``D_gp`` after ``D_fake`` with ``--gan_mode wgangp``; ``time`` = seconds since the run, or its latest
resume, started). The whole file is rewritten atomically at each row (it is small), so it is never half
written; when a run resumes, rows past the resumed position are dropped, so the log of a resumed run is the
log of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..io import atomic_write_text


class LossLog:
    def __init__(self, path: Path, columns: list[str], *, resume_at: int | None = None) -> None:
        self.path = Path(path)
        self.columns = columns
        self.rows: list[dict[str, Any]] = []
        if resume_at is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    try:
                        if int(row["total_iters"]) <= resume_at:
                            self.rows.append(row)
                    except (KeyError, TypeError, ValueError):
                        continue

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({k: row.get(k, "") for k in self.columns})
        self.flush()

    def flush(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
        atomic_write_text(self.path, buf.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class LossMeter:
    """Running sums of the losses: a window (for the log rows) and the epoch (for the plateau schedule)."""

    def __init__(self) -> None:
        self.window: dict[str, float] = {}
        self.window_n = 0
        self.epoch_G = 0.0
        self.epoch_n = 0

    def add(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.window[k] = self.window.get(k, 0.0) + v
        self.window_n += 1
        self.epoch_G += losses.get("G_GAN", 0.0) + losses.get("G_L1", 0.0)
        self.epoch_n += 1

    def take_window(self) -> dict[str, float]:
        means = {k: v / max(1, self.window_n) for k, v in self.window.items()}
        self.window, self.window_n = {}, 0
        return means

    def take_epoch_G(self) -> float:
        mean = self.epoch_G / max(1, self.epoch_n)
        self.epoch_G, self.epoch_n = 0.0, 0
        return mean

    def state_dict(self) -> dict[str, Any]:
        return {"window": dict(self.window), "window_n": self.window_n, "epoch_G": self.epoch_G,
                "epoch_n": self.epoch_n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = dict(state["window"])
        self.window_n = int(state["window_n"])
        self.epoch_G = float(state["epoch_G"])
        self.epoch_n = int(state["epoch_n"])
