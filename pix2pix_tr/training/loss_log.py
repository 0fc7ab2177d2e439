"""The machine-readable loss log ``checkpoints/NAME/loss_log.csv``.

One row every ``--print_freq`` iterations and at the end of every epoch, with the losses averaged over the
iterations since the previous row::

    epoch,epoch_iter,total_iters,G_GAN,G_L1,D_real,D_fake,lr_G,lr_D,time

(``D_gp`` after ``D_fake`` with ``--gan_mode wgangp``; ``time`` = seconds since the run, or its latest
resume, started). Each row is appended to the file in one write, not by rewriting the file; a write that fails
part-way (disk full) is cut back to the previous end. A row left unfinished by a crash is skipped by the readers
(:func:`pix2pix_tr.report.plots.read_loss_log`) and dropped when the run resumes. A fresh run replaces the file
atomically with its header; a resumed run drops the rows past the resumed position (one atomic rewrite, only
when there are any), so the log of a resumed run is the log of an uninterrupted one.
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
        self.columns = list(columns)
        kept: list[dict[str, Any]] | None = None
        if resume_at is not None and self.path.is_file():
            kept, unchanged = self._rows_up_to(resume_at)
            if unchanged:
                return  # the file already is the log up to the resumed position: keep appending to it
        atomic_write_text(self.path, self._format([dict(zip(self.columns, self.columns)), *(kept or [])]))

    def _rows_up_to(self, resume_at: int) -> tuple[list[dict[str, Any]], bool]:
        """The complete rows at or before ``resume_at``, and whether the file holds exactly those (same header,
        nothing later, no unfinished last line)."""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        complete = text[: text.rfind("\n") + 1]  # an unfinished last line is a row cut short by a crash
        kept, later = [], False
        reader = csv.DictReader(io.StringIO(complete))
        for row in reader:
            try:
                if int(row["total_iters"]) <= resume_at:
                    kept.append(row)
                else:
                    later = True
            except (KeyError, TypeError, ValueError):
                later = True
        unchanged = complete == text and not later and reader.fieldnames == self.columns
        return kept, unchanged

    def _format(self, rows: list[dict[str, Any]]) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        for row in rows:
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
        return buf.getvalue()

    def append(self, row: dict[str, Any]) -> None:
        """Add one row at the end of the file: all of it or, if the write fails, none of it."""
        data = memoryview(self._format([row]).encode("utf-8"))
        with open(self.path, "ab", buffering=0) as handle:
            start = handle.seek(0, io.SEEK_END)
            try:
                while data:
                    data = data[handle.write(data):]
            except OSError:
                handle.truncate(start)
                raise


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
