"""One process of ``bench/run cpu``: runs admitted and executed in it, its CPU measured from inside.

``python -m bench.cpu_scenario inprocess STORE URL RUNS [--sample]``: one caller awaits
``workflows.start(noop, input={"n": i})`` RUNS times, the runs executing in the same process meanwhile
(as in an application, and as ``bench/run`` measures sequential admission), then waits until every run
ended. Prints one JSON line: the process's CPU over that stretch, per thread (user, system, exact
total), the garbage collector's (exact), and with ``--sample`` py-spy's samples of it counted by
thread and phase (:mod:`bench.cpu_phases`; ``FLUE_CPU_SAMPLES=<file>`` keeps the raw samples).

``python -m bench.cpu_scenario serve STORE URL [--sample]``: serves ``create_app`` with
``flue_core.http.serve`` (uvloop and httptools, as ``flue serve``) on 127.0.0.1 and prints its base URL;
a line ``start`` on stdin starts a measured stretch (answered ``started``), a line ``stop`` ends it
(answered with the same JSON), each once every run admitted so far has ended. Ends when stdin closes.

STORE is ``memory``, ``sqlite`` (a fresh file in a temporary directory, ``synchronous`` at its default
``FULL``) or ``redis`` (URL: the server, its key prefix fresh for this process).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from flue_core import RunContext, Runtime, runs, workflow, workflows

WARMUP = 500
REDIS_PID = "FLUE_CPU_REDIS_PID"
KEEP_SAMPLES = "FLUE_CPU_SAMPLES"
MAIN_CPU, OTHER_CPU = 0, 1
TICK = os.sysconf("SC_CLK_TCK")


@workflow(name="noop", http=True)
async def noop(ctx: RunContext, input: dict) -> None:
    """Takes a JSON object (every admission reads, parses and validates one) and does nothing."""
    return None


def label_of(name: str | None, main: bool) -> str:
    """Threads by role: ``main`` (the event loop's), ``connection`` (SQLite's connection thread,
    aiosqlite's), ``other`` (anyio's worker threads, the sampler's reader...)."""
    if main:
        return "main"
    return "connection" if name is not None and "_connection_worker_thread" in name else "other"



def thread_cpu() -> dict[str, dict[str, float]]:
    """Per thread of this process: user and system seconds (``/proc``, clock ticks) and the exact CPU
    nanoseconds (``schedstat``), keyed by native thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            exact = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = {"user": int(fields[11]) / TICK, "sys": int(fields[12]) / TICK, "ns": exact}
    return out


def _process_cpu(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def snapshot() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    now = {"wall": time.perf_counter(), "user": usage.ru_utime, "sys": usage.ru_stime, "threads": thread_cpu()}
    if REDIS_PID in os.environ:  # the Redis server of the run store: its CPU, apart
        now["redis_user"], now["redis_sys"] = _process_cpu(int(os.environ[REDIS_PID]))
    return now


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    names = {str(t.native_id): (t.name, t is threading.main_thread()) for t in threading.enumerate()}
    threads: dict[str, dict[str, float]] = {}
    for tid, now in after["threads"].items():
        then = before["threads"].get(tid, {"user": 0.0, "sys": 0.0, "ns": 0})
        name, main = names.get(tid, (None, int(tid) == os.getpid()))
        totals = threads.setdefault(label_of(name, main), {"user": 0.0, "sys": 0.0, "ns": 0})
        for key in ("user", "sys", "ns"):
            totals[key] += now[key] - then[key]
    out = {key: after[key] - before[key] for key in after if key != "threads"}
    out["seconds"] = out.pop("wall")
    out["threads"] = threads
    return out


class GarbageClock:
    """The CPU the cyclic garbage collector takes, per thread label, exactly (``gc.callbacks``): sampled
    stacks cannot show it, it lands on whatever Python frame allocated when it ran."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = {}
        self._began: dict[int, int] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, stage: str, info: dict[str, Any]) -> None:
        ident = threading.get_ident()
        if stage == "start":
            self._began[ident] = time.thread_time_ns()
            return
        began = self._began.pop(ident, None)
        if began is not None:
            label = label_of(threading.current_thread().name, ident == threading.main_thread().ident)
            self.ns[label] = self.ns.get(label, 0) + time.thread_time_ns() - began


def labels() -> dict[int, str]:
    return {t.native_id: label_of(t.name, t is threading.main_thread()) for t in threading.enumerate() if t.native_id}


def pin_threads() -> None:
    """For a sampled round: the event loop's thread on CPU 0, every other thread of this process on
    CPU 1 (with py-spy and the load generator): a thread that wakes another is then not preempted by it
    on its own CPU, which would keep it runnable where it woke the other, and sampling would charge
    that wait to that spot. (Split so, SQLite's two threads cost ~15 % more CPU per run than where the
    OS puts them: the totals come from rounds that are not pinned.)"""
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        return
    for tid, label in labels().items():
        try:
            os.sched_setaffinity(tid, {MAIN_CPU} if label == "main" else {OTHER_CPU})
        except OSError:
            pass


class Sampler:
    """py-spy sampling this process 1,000 times a second without stopping it (``--nonblocking``)."""

    def __init__(self) -> None:
        import bench.cpu_phases  # noqa: F401  (imported now: its set-up reads source files)

        spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        if spy is None:
            raise SystemExit("bench/run cpu needs py-spy (pip install py-spy).")
        self._spy = spy
        self._process: subprocess.Popen[bytes] | None = None
        self.output = Path(tempfile.mkdtemp(prefix="flue-cpu-")) / "samples.txt"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self._spy, "record", "--pid", str(os.getpid()), "--rate", "1000", "--nonblocking", "--threads",
             "--format", "raw", "--output", str(self.output)],
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, {OTHER_CPU}) if (os.cpu_count() or 1) > 1 else None,
        )  # fmt: skip
        assert self._process.stdout is not None
        if not self._process.stdout.readline():  # "py-spy> Sampling process ...": attached
            raise SystemExit(f"py-spy could not sample this process (exit code {self._process.wait()}).")
        time.sleep(0.2)

    def stop(self) -> dict[str, dict[str, int]]:
        from bench.cpu_phases import read_samples

        assert self._process is not None
        self._process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        self._process.communicate(timeout=60)
        samples = read_samples(self.output, labels())
        keep = os.environ.get(KEEP_SAMPLES)
        if keep:  # for python -m bench.cpu_phases
            shutil.copyfile(self.output, keep)
        shutil.rmtree(self.output.parent, ignore_errors=True)
        return {label: dict(counts) for label, counts in samples.items()}


class Measure:
    """The CPU between :meth:`start` and :meth:`stop`, the garbage collector's, and (``sample``)
    py-spy's samples of it by thread and phase."""

    def __init__(self, sample: bool) -> None:
        self.garbage = GarbageClock()
        self.sampler = Sampler() if sample else None
        self._last = snapshot()
        self._garbage: dict[str, int] = {}

    def start(self) -> None:
        if self.sampler is not None:  # the plain rounds (the totals) run where the OS puts them
            pin_threads()
            self.sampler.start()
        self._last = snapshot()
        self._garbage = dict(self.garbage.ns)

    def stop(self) -> dict[str, Any]:
        now = snapshot()
        out = difference(self._last, now)
        out["gc_ns"] = {label: ns - self._garbage.get(label, 0) for label, ns in self.garbage.ns.items()}
        if self.sampler is not None:
            out["samples"] = self.sampler.stop()
        return out


def runtime_for(store: str, url: str) -> Runtime:
    from flue_node_like import LocalTarget, MemoryStore, RedisStore, SqliteStore

    if store == "memory":
        backend: Any = MemoryStore()
    elif store == "sqlite":
        backend = SqliteStore(Path(tempfile.mkdtemp(prefix="flue-cpu-")) / "flue.db")
    else:
        backend = RedisStore(url)
    return Runtime([noop], target=LocalTarget(backend), entry_points=False)


async def drained(runtime: Runtime) -> None:
    """Until no run admitted here is waiting or executing (three looks 10 ms apart)."""
    target: Any = runtime.target
    quiet = 0
    while quiet < 3:
        quiet = quiet + 1 if target._inflight == 0 else 0
        await anyio.sleep(0.01)


async def admit_sequentially(count: int) -> None:
    for i in range(count):
        await workflows.start(noop, input={"n": i})


async def inprocess(store: str, url: str, count: int, sample: bool) -> dict[str, Any]:
    runtime = runtime_for(store, url)
    async with runtime:
        await admit_sequentially(WARMUP)
        await drained(runtime)
        measure = Measure(sample)
        measure.start()
        began = time.perf_counter()
        await admit_sequentially(count)
        admitted = time.perf_counter() - began
        await drained(runtime)
        figures = measure.stop()
    figures.update(runs=count, admission_seconds=admitted)
    return figures


async def serve(store: str, url: str, sample: bool) -> None:
    from flue_core.http import create_app, serve as serve_http

    runtime = runtime_for(store, url)
    async with runtime:
        app = create_app(runtime, authorize_run_read=lambda request, run: True)
        async with serve_http(app) as base:
            measure = Measure(sample)
            print(base, flush=True)
            lines = anyio.wrap_file(sys.stdin)
            async for line in lines:
                if line.strip() == "start":
                    await drained(runtime)
                    measure.start()
                    print("started", flush=True)
                elif line.strip() == "stop":
                    await drained(runtime)
                    print(json.dumps(measure.stop()), flush=True)


def main() -> None:
    mode, store, url = sys.argv[1], sys.argv[2], sys.argv[3]
    sample = "--sample" in sys.argv
    if mode == "inprocess":
        figures = anyio.run(inprocess, store, url, int(sys.argv[4]), sample)
        print(json.dumps(figures), flush=True)
    else:
        from flue_core.http.server import event_loop_options

        anyio.run(serve, store, url, sample, **event_loop_options())


if __name__ == "__main__":
    from bench.cpu_scenario import main as main_of_module  # one copy of this module: the one probes patch

    main_of_module()
