"""One workerd per storage folder: a lock file that says who holds the folder.

Two workerds on one storage folder each take the other's executing runs for abandoned ones (runs
failed, executed twice, records and streams disagreeing), so a second start on a folder in use is
refused with the holder named. The lock is an ``flock`` on ``<folder>/workerd.lock``, held by the
process that starts workerd and inherited by workerd itself: it is released only once both are gone,
whatever killed them, and a lock file left behind by a dead holder is simply taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from flue_cloudflare.devtools.errors import ToolingError

LOCK_FILE = "workerd.lock"


class FolderInUse(ToolingError):
    """Another workerd serves this storage folder."""

    code = "folder_in_use"


class FolderLock:
    """The exclusive lock of a storage folder, taken by :meth:`acquire` and given up by :meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def fd(self) -> int | None:
        """The locked descriptor, for workerd to inherit; ``None`` when not held."""
        return self._fd

    def acquire(self, patience: float = 2.0) -> None:
        """Take the lock (once; a second call while held does nothing), or raise :class:`FolderInUse`
        naming the processes that hold it. A holder that is dying (a killed workerd's threads take a
        moment to let go of its files) is waited for up to ``patience`` seconds."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                raise FolderInUse(self._held_by()) from None
        os.set_inheritable(fd, False)  # inherited only by workerd, through pass_fds
        self._fd = fd
        self.note(workerd_pid=None)

    def note(self, *, workerd_pid: int | None) -> None:
        """Write who holds the lock: this process, its command line and its workerd."""
        if self._fd is None:
            return
        holder = {
            "pid": os.getpid(),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "workerd_pid": workerd_pid,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        data = (json.dumps(holder) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # workerd, once gone, holds no copy: the lock is free
            self._fd = None

    def _held_by(self) -> str:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        who = f"process {holder.get('pid', '?')} (`{holder.get('command', '?')}`)"
        if holder.get("workerd_pid"):
            who = f"workerd (pid {holder['workerd_pid']}) started by {who}"
        return (
            f"The storage folder {self.path.parent} is in use by {who} since {holder.get('since', '?')}: two"
            " workerds on one folder each take the other's executing runs for abandoned ones. Stop that one"
            " first, or use another folder (--folder)."
        )
