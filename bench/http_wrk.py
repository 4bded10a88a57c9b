"""``POST /workflows/{name}`` under load from wrk, a native load generator (``bench/wrk_post.lua``).

The load generator must not be what is measured: a Python client spends more CPU per request than
the server it loads. wrk (Debian's package, installed here with apt-get when missing and this runs as
root) keeps its 32 connections busy from one thread on its own CPU, and reports requests, the time
they took and a latency distribution (p50/p99 in µs); the Lua script posts a JSON body with its content
type, counts the answers by status and remembers the last run admitted.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("wrk_post.lua")


def ensure_wrk() -> str:
    """The path of ``wrk``, installed with apt-get first when it is missing and this runs as root."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk with apt-get", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, stdout=subprocess.DEVNULL, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, env=env)
            subprocess.run(install, stdout=subprocess.DEVNULL, env=env)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("The HTTP benchmark needs wrk (apt-get install wrk).")
    return found


def children_cpu_seconds() -> float:
    """User + system CPU of this process's finished children (the wrk runs; the server is still running)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str, *, body: str, connections: int, seconds: float, cpu: int | None, threads: int = 1
) -> dict[str, Any]:
    """One wrk run against ``url``: its JSON summary (see ``wrk_post.lua``) with ``per_s``,
    ``p50_ms`` and ``p99_ms`` added. ``cpu``: the CPU wrk is pinned to (``None``: any)."""
    command = [
        ensure_wrk(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={SCRIPT}",
        url,
    ]
    if cpu is not None:
        command = ["taskset", "--cpu-list", str(cpu), *command]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FLUE_WRK_BODY": body})
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    seconds_taken = summary["duration_us"] / 1e6
    return {
        **summary,
        "per_s": summary["requests"] / seconds_taken,
        "p50_ms": summary["p50_us"] / 1000,
        "p90_ms": summary["p90_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
    }
