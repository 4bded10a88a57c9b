"""The server process of the HTTP benchmark, seen from the benchmark: starting it, measuring its CPU,
sampling it with py-spy."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
#: With ``pin``, the server runs on this CPU and the benchmark (its load generator) on the other.
SERVER_CPU, CLIENT_CPU = 0, 1


@dataclass
class Server:
    """A running ``bench.http_server``: its base URL, its process, its working directory."""

    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process (all its threads) has used so far."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on; comm may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(mode: str, pin: bool, stack: str = "default", concurrency: int | None = None) -> Iterator[Server]:
    """``python -m bench.http_server MODE STACK`` in a fresh temporary directory (its working directory,
    so the default store ``sqlite:///.flue/flue.db`` lands there), stopped by closing its stdin;
    ``concurrency``: the local target's runs at a time (its default otherwise)."""
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        env = {k: v for k, v in os.environ.items() if k not in ("FLUE_STORE", "FLUE_TARGET")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        if concurrency is not None:
            env["FLUE_BENCH_CONCURRENCY"] = str(concurrency)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.http_server", mode, stack],
            cwd=scratch,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=(lambda: os.sched_setaffinity(0, {SERVER_CPU})) if pin else None,
        )
        try:
            assert process.stdout is not None and process.stdin is not None
            line = process.stdout.readline().decode().strip()
            if not line.startswith("http://"):
                raise SystemExit(f"The {mode} server did not start (exit code {process.wait()}).")
            yield Server(line, process, Path(scratch))
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def profiled(srv: Server, name: str | bool) -> Iterator[None]:
    """With a ``name`` (not ``False``), sample the server with py-spy meanwhile: collapsed stacks of
    what ran, into ``bench/results/<name>.txt`` (they open in speedscope or flamegraph.pl)."""
    if not name:
        yield
        return
    spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy).")
    output = RESULTS / f"{name}.txt"
    sampler = subprocess.Popen(
        [spy, "record", "--pid", str(srv.process.pid), "--rate", "250", "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the measured stretch begins
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        sampler.wait(timeout=30)
        print(f"Profile of the server: {output}", file=sys.stderr)


@dataclass
class Window:
    """Wall time and CPU of both processes over one measured stretch. The load generator's CPU is
    ``client_cpu_seconds()``: this process's by default, or wrk's (its finished children's)."""

    server: Server
    client_cpu_seconds: Callable[[], float] = time.process_time
    began: float = 0.0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0

    def start(self) -> Window:
        self.began, self.server_cpu = time.perf_counter(), self.server.cpu_seconds()
        self.client_cpu, self.machine_cpu = self.client_cpu_seconds(), _machine_cpu_seconds()
        return self

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self.began
        self.server_cpu = self.server.cpu_seconds() - self.server_cpu
        self.client_cpu = self.client_cpu_seconds() - self.client_cpu
        self.machine_cpu = _machine_cpu_seconds() - self.machine_cpu

    __enter__ = start

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def summary(self) -> dict[str, float]:
        """CPU as a percentage of one core: the server's, this process's, and everything else on the
        machine meanwhile (other programs compete for the same two cores and skew the figures)."""
        others = max(0.0, self.machine_cpu - self.server_cpu - self.client_cpu)
        return {
            "seconds": self.seconds,
            "server_cpu_pct": 100 * self.server_cpu / self.seconds,
            "client_cpu_pct": 100 * self.client_cpu / self.seconds,
            "other_cpu_pct": 100 * others / self.seconds,
        }


def _machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (``/proc/stat``: all but idle and iowait)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
