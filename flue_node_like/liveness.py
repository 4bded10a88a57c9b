"""Is a worker process still alive? Exact on the same machine, by lease elsewhere."""

from __future__ import annotations

import hashlib
import os
import socket
import time

from flue_core.store import WorkerInfo


def _machine() -> str:
    """This host as workers record it: the host name and, where Linux tells, a digest of the boot and
    the PID namespace — a pid means something only within one of those, and two containers sharing
    a host name (host networking), or one host before and after a reboot, must not be taken for
    each other. Workers of another machine are judged by their lease alone."""
    name = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            identity = f"{boot.read().strip()} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return name
    return f"{name}#{hashlib.sha1(identity.encode()).hexdigest()[:8]}"


HOST = _machine()


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
