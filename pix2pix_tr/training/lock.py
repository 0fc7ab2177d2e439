"""One writer per run folder: ``checkpoints/NAME/.lock``.

:class:`RunLock` takes an exclusive ``fcntl.flock`` on the lock file and writes who holds it (process id, host,
start time, command line) into it. The kernel drops the lock when the process ends, however it ends (kill -9
included), so a lock left by a crash is never stale: the next run simply takes it. A second ``train.py`` on
the same folder is refused at once with a sentence naming the holder.

``flock`` is honoured between processes of one machine, and on most network filesystems (NFSv4, Lustre with
``flock`` mounts); on filesystems without it :class:`RunLock` still records the holder but cannot exclude.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from pathlib import Path

from .errors import TrainingError

LOCK_FILE = ".lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no exclusion, the holder is still recorded
    fcntl = None


class RunLock:
    """``with RunLock(run_dir): ...`` holds the run folder's lock; TrainingError when another process has it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise TrainingError(
                    f"{self.path.parent} is being written by another training process ({holder}); wait for it to "
                    f"finish or stop it, or choose another --name") from None
        os.ftruncate(fd, 0)
        started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}: "
                     f"{' '.join(sys.argv)[:300]}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (removing it would race a new holder)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 400, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "process unknown"
