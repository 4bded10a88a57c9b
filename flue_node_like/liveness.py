"""Is a worker still alive? Dead once its lease ran out, and sooner on the same machine when its
process is gone."""

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


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` (Linux) after the command name, from the state on."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_started(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid from the original."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def process_exited(pid: int) -> bool:
    """Whether ``pid`` has exited but is not reaped yet (a zombie, ``Z``, or being torn down, ``X``):
    it still answers signals, yet it will never renew a lease again."""
    fields = _stat(pid)
    return fields is not None and bool(fields) and fields[0] in ("Z", "X")


def this_worker(worker_id: str) -> WorkerInfo:
    pid = os.getpid()
    return WorkerInfo(worker_id, HOST, pid, process_started(pid), time.time())


def is_dead(worker: WorkerInfo, lease: float, now: float | None = None) -> bool:
    """Whether ``worker`` is dead, so that its runs may be taken over.

    On every host a worker is dead once its lease ran out (its last heartbeat is more than ``lease``
    seconds old): a worker that stopped renewing it is gone, or hung (deadlocked, stopped by
    ``SIGSTOP``, its event loop blocked past the lease by a synchronous call) and may never come
    back; its runs are executed elsewhere, and what it writes for them if it does come back is
    refused (the store ends or parks a run only for the worker that holds it). On this host the
    process tells death sooner: a worker whose process exited (a zombie its parent has not reaped
    yet included) or whose pid another process took is dead at once, lease or not. A worker of
    this very process is judged by its lease alone: only its own runtime renews it.
    """
    if (now if now is not None else time.time()) - worker.heartbeat_at > lease:
        return True
    if worker.host != HOST:
        return False
    if worker.pid == os.getpid() and worker.pid_started == process_started(worker.pid):
        return False
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: alive unless it is a zombie or another process reused the pid
    if process_exited(worker.pid):
        return True
    started = process_started(worker.pid)
    return worker.pid_started is not None and started is not None and started != worker.pid_started
