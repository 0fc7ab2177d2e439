"""One writer per run folder: ``checkpoints/NAME/.lock``.

:class:`RunLock` takes an exclusive ``fcntl.flock`` on the lock file and writes who holds it (process id, host,
start time, command line) into it. The kernel drops the lock when the process ends, however it ends (kill -9
included), so a lock left by a crash is never stale: the next run simply takes it. A second ``train.py`` on
the same folder is refused at once with a sentence naming the holder.

``flock`` is honoured between processes of one machine, and on most network filesystems (NFSv4, Lustre with
``flock`` mounts); on filesystems without it :class:`RunLock` still records the holder but cannot exclude.

A run that fails its checks in a folder it created removes the folder again (:meth:`RunLock.remove_folder_if_empty`):
it deletes the lock file *while holding it*. That is safe because :meth:`RunLock.acquire` only keeps a lock on the
file that is still at the lock path: a process that opened the file before the deletion and is granted the lock
after it finds its file gone (or replaced), and starts over on the path.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
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

    #: how often :meth:`acquire` starts over when the lock file is removed under it (each time by a process that
    #: gave the folder up, so more than a few in a row means something else keeps deleting it)
    ATTEMPTS = 20

    def acquire(self) -> "RunLock":
        for _ in range(self.ATTEMPTS):
            fd = self._try_acquire()
            if fd is not None:
                break
        else:
            raise TrainingError(f"{self.path} keeps disappearing while train.py takes the run folder's lock; check "
                                f"what deletes files in {self.path.parent}")
        os.ftruncate(fd, 0)
        started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}: "
                     f"{' '.join(sys.argv)[:300]}\n".encode())
        self._fd = fd
        return self

    def _try_acquire(self) -> int | None:
        """The locked descriptor of the file at the lock path, or None when that file was removed (or replaced)
        between opening and locking it; TrainingError naming the holder when another process has the lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed after mkdir (a failed run cleaning up): start over
            return None
        except IsADirectoryError:
            raise TrainingError(f"{self.path} is a folder, but train.py keeps its lock file under that name: remove "
                                f"it (it is not train.py's) or choose another --name") from None
        except OSError as exc:
            raise TrainingError(f"cannot open the lock file {self.path} ({exc.strerror or exc}): make it writable, "
                                f"remove it, or choose another --name") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise TrainingError(
                    f"{self.path.parent} is being written by another training process ({holder}); wait for it to "
                    f"finish or stop it, or choose another --name") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                os.close(fd)
                raise
            same = False
        if not same:  # we locked a file its holder deleted on the way out: it no longer guards the folder
            os.close(fd)
            return None
        return fd

    def remove_folder_if_empty(self) -> None:
        """Remove the run folder if it holds nothing but the lock file (a run that failed before writing
        anything), deleting the lock file while still holding it, then release the lock. Never raises: the
        caller is reporting another error, and a folder left behind (e.g. because a second process took it
        meanwhile) is harmless."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            folder = self.path.parent
            if [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                self.path.unlink()
                folder.rmdir()  # fails (suppressed) if another process created its lock file meanwhile
        self.release()

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
