"""Is a worker process still alive? Exact on the same host, by lease elsewhere."""

from __future__ import annotations

import os
import socket
import time

from flue_core.store import WorkerInfo

HOST = socket.gethostname()


def process_started(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_worker(worker_id: str) -> WorkerInfo:
    pid = os.getpid()
    return WorkerInfo(worker_id, HOST, pid, process_started(pid), time.time())


def is_dead(worker: WorkerInfo, lease: float, now: float | None = None) -> bool:
    """On this host a worker is dead exactly when its process is gone (a live process that stopped
    renewing its lease, say stuck in a long synchronous call, is not); elsewhere, when its lease ran
    out. A worker of this very process is judged by its lease: only its own runtime renews it."""
    expired = (now if now is not None else time.time()) - worker.heartbeat_at > lease
    if worker.host != HOST:
        return expired
    if worker.pid == os.getpid() and worker.pid_started == process_started(worker.pid):
        return expired
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = process_started(worker.pid)
    return worker.pid_started is not None and started is not None and started != worker.pid_started
