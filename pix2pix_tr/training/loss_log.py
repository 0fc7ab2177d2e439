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
import math
from pathlib import Path
from typing import Any, Mapping

import torch

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
    """Running sums of the losses, kept on the training device: a window (for the log rows) and the epoch's
    generator loss (for the plateau schedule).

    :meth:`add` takes one iteration's losses (0-d device tensors) and only queues device work: the sums are
    float64 (float32 on MPS), so they equal, bit for bit, the Python float sums of the values. It also counts, per
    loss, the iterations after which the window's sum was still finite; since a NaN/inf stays in a sum, that count
    says which iteration first made each loss non-finite (:meth:`first_nonfinite`). The host reads these numbers
    only when asked (:meth:`read`, a single transfer, kept until the next :meth:`add`): at a log row, a check or a
    save.
    """

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.window_n = 0
        self.epoch_n = 0
        self._sums: torch.Tensor | None = None  # [window sums (k), finite-step counts (k), epoch G sum]
        self._host: list[float] | None = None  # the same numbers, read back; None when stale
        self._loaded: dict[str, Any] = {"window": {}, "epoch_G": 0.0}
        self._g_index: list[int] = []

    def add(self, losses: Mapping[str, torch.Tensor]) -> None:
        """Add one iteration's losses (device tensors; no host synchronisation)."""
        if self._sums is None:
            self._start(losses)
        k = len(self.names)
        vec = torch.stack([losses[name] for name in self.names]).to(self._sums.dtype)
        window, finite, epoch_G = self._sums[:k], self._sums[k:2 * k], self._sums[2 * k:]
        window.add_(vec)
        finite.add_(torch.isfinite(window))
        if self._g_index:  # (G_GAN + G_L1), then added: the order of the float sums this replaces
            g_loss = vec[self._g_index[0]]
            for i in self._g_index[1:]:
                g_loss = g_loss + vec[i]
            epoch_G.add_(g_loss)
        self.window_n += 1
        self.epoch_n += 1
        self._host = None

    def _start(self, losses: Mapping[str, torch.Tensor]) -> None:
        """The device sums, on the losses' device, from zero or from a loaded state."""
        self.names = tuple(losses)
        device = next(iter(losses.values())).device
        dtype = torch.float32 if device.type == "mps" else torch.float64
        window = [float(self._loaded["window"].get(name, 0.0)) for name in self.names]
        self._g_index = [i for i, name in enumerate(self.names) if name in ("G_GAN", "G_L1")]
        values = window + [float(self.window_n)] * len(self.names) + [float(self._loaded["epoch_G"])]
        self._sums = torch.tensor(values, dtype=dtype, device=device)

    def read(self) -> list[float]:
        """The window sums, the finite-step counts and the epoch's G sum on the host (one transfer, reused until
        the next :meth:`add`)."""
        if self._sums is None:
            window = [float(self._loaded["window"][name]) for name in self._loaded["window"]]
            return window + [float(self.window_n)] * len(window) + [float(self._loaded["epoch_G"])]
        if self._host is None:
            self.keep(self._sums.tolist())
        return self._host

    def device_values(self) -> torch.Tensor | None:
        """The numbers :meth:`read` returns, as the device tensor (for a caller that reads them together with
        others in one transfer and hands the host copy back with :meth:`keep`)."""
        return self._sums

    def keep(self, values: list[float]) -> None:
        """The host copy of :meth:`device_values` a caller read (valid until the next :meth:`add`)."""
        self._host = list(values)

    def first_nonfinite(self, order: tuple[str, ...] = ()) -> tuple[str, float, int] | None:
        """``(name, window sum, iterations of the window before it went non-finite)`` of the loss that became
        NaN/inf first in the current window (ties: first in ``order``), or None when every sum is finite."""
        names = self._names()
        k = len(names)
        values = self.read()
        bad = [(int(values[k + i]), (order.index(name) if name in order else len(order)), name, values[i])
               for i, name in enumerate(names) if not math.isfinite(values[i])]
        if not bad:
            return None
        steps, _, name, value = min(bad)
        return name, value, steps

    def _names(self) -> tuple[str, ...]:
        return self.names if self._sums is not None else tuple(self._loaded["window"])

    def take_window(self) -> dict[str, float]:
        """The mean of each loss over the window, which then starts over."""
        names, values, n = self._names(), self.read(), self.window_n
        means = {name: values[i] / n for i, name in enumerate(names)} if n else {}
        if self._sums is not None:
            self._sums[: 2 * len(names)].zero_()
            if self._host is not None:
                self._host[: 2 * len(names)] = [0.0] * (2 * len(names))
        else:
            self._loaded["window"] = {}
        self.window_n = 0
        return means

    def take_epoch_G(self) -> float:
        """The mean generator loss (GAN + L1) of the epoch, which then starts over."""
        total = self.read()[-1]
        mean = total / max(1, self.epoch_n)
        if self._sums is not None:
            self._sums[-1:].zero_()
            if self._host is not None:
                self._host[-1] = 0.0
        else:
            self._loaded["epoch_G"] = 0.0
        self.epoch_n = 0
        return mean

    def state_dict(self) -> dict[str, Any]:
        names, values = self._names(), self.read()
        window = {name: values[i] for i, name in enumerate(names)} if self.window_n else {}
        return {"window": window, "window_n": self.window_n,
                "epoch_G": values[-1], "epoch_n": self.epoch_n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = {"window": {k: float(v) for k, v in state["window"].items()}, "epoch_G": float(state["epoch_G"])}
        self.window_n = int(state["window_n"])
        self.epoch_n = int(state["epoch_n"])
        self.names, self._sums, self._host = (), None, None
