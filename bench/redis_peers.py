"""The queues Python users pick today, on the Redis the Flue figures were taken on: ARQ, Celery (Redis
broker and result backend), Taskiq (taskiq-redis) and RQ.

Each runs in a virtual environment of its own under ``bench/.peers/<name>`` (git-ignored), created on
first use with the pinned versions below (ARQ pins an older redis-py than Flue's), and in a database
of its own on the server. ``bench/peers/<name>_bench.py`` measures, with no-op jobs:

* **sequential enqueue**: 200 warm-up enqueues, then ``--sequential`` more: p50, p99, rate; no worker
  runs meanwhile (the queue fills);
* **32 concurrent callers**: 32 asyncio tasks (ARQ, Taskiq) or 32 threads (Celery, RQ) enqueueing;
* **enqueue → done**: one worker of the library's own (ARQ ``arq``, ``poll_delay`` 5 ms instead of
  its 0.5 s; Celery ``worker --pool=solo``; RQ ``SimpleWorker``, as the default worker forks per
  job; Taskiq ``taskiq worker``), then one job at a time: enqueue, then wait for its result the
  library's way (ARQ ``job.result(poll_delay=1 ms)``, Celery ``get()`` on the Redis backend's
  pub/sub, RQ status polled every 1 ms, Taskiq ``wait_result(check_interval=1 ms)``).

``python -m bench.redis_peers REDIS_URL`` measures them alone; ``bench.redis_runs`` calls
:func:`measure_all` after measuring Flue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stats import latency

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".peers"
#: name → (pinned requirements, database number on the server)
PEERS: dict[str, tuple[list[str], int]] = {
    "arq": (["arq==0.28.0"], 1),
    "celery": (["celery[redis]==5.7.0"], 2),
    "rq": (["rq==2.12.0"], 3),
    "taskiq": (["taskiq==0.13.0", "taskiq-redis==1.2.4"], 4),
}


def environment(name: str) -> Path:
    """The peer's interpreter, its environment made (and its requirements installed) if needed."""
    requirements, _ = PEERS[name]
    folder = ENVS / name
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(requirements):
        venv.create(folder, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements], check=True)
        stamp.write_text(" ".join(requirements))
    return python


def measure(name: str, redis_url: str, sequential: int = 2000, concurrent: int = 10000, end_to_end: int = 500) -> dict[str, Any]:
    python = environment(name)
    parts = urlsplit(redis_url)
    url = f"redis://{parts.hostname}:{parts.port}/{PEERS[name][1]}"
    done = subprocess.run(
        [str(python), str(HERE / "peers" / f"{name}_bench.py"), str(sequential), str(concurrent), str(end_to_end)],
        cwd=HERE / "peers",
        capture_output=True,
        text=True,
        env={**os.environ, "PEER_REDIS_URL": url, "PYTHONPATH": str(HERE / "peers")},
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring {name} failed:\n{done.stderr[-4000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "sequential": {"rate": len(raw["sequential"]) / raw["sequential_elapsed"], **latency(raw["sequential"])},
        "concurrent": {"rate": len(raw["concurrent"]) / raw["concurrent_elapsed"], **latency(raw["concurrent"])},
        "end_to_end": latency(raw["end_to_end"]),
    }


def measure_all(redis_url: str) -> dict[str, Any]:
    found = {}
    for name in PEERS:
        print(f"measuring {name}...", file=sys.stderr)
        found[name] = measure(name, redis_url)
        print(f"  {name}: {found[name]}", file=sys.stderr)
    return found


if __name__ == "__main__":
    print(json.dumps(measure_all(sys.argv[1]), indent=2))
