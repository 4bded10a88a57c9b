"""The Cloudflare target's foundation on a local workerd: tooling cost, cold start, and the latency of
requests through a Python Worker to a SQLite-backed Python Durable Object (by fetch and by RPC).

    python -m bench.workerd_foundation            # or: bench/run workerd
    python -m bench.workerd_foundation --fresh    # also time fetch + build from an empty cache

Every request is sequential over one keep-alive connection from the host (httpx). The Worker is
``bench/workers/do_latency.py``. Figures are printed and written to ``bench/results/<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.stats import percentile
from flue_cloudflare.devtools import Cache, DurableObjectClass, LocalWorker, WorkerApp
from flue_cloudflare.devtools.bundle import build_bundle
from flue_cloudflare.devtools.ingredients import SDK_REQUIREMENT, node_packages
from flue_cloudflare.devtools.vendor import lay_out
from flue_cloudflare.devtools.wheels import download_wheels, flue_worker_requirements

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def app() -> WorkerApp:
    return WorkerApp(
        name="bench",
        main=BENCH / "workers" / "do_latency.py",
        packages=(),
        requirements=(SDK_REQUIREMENT,),
        durable_objects=(DurableObjectClass("Counter", "COUNTER"),),
    )


@contextmanager
def fresh_registries_cache() -> Iterator[Path]:
    """npm's and pip's own caches pointed at an empty folder, so that fetching downloads."""
    folder = Path(tempfile.mkdtemp(prefix="flue-bench-fresh-"))
    saved = {key: os.environ.get(key) for key in ("npm_config_cache", "PIP_CACHE_DIR")}
    os.environ.update(npm_config_cache=str(folder / "npm"), PIP_CACHE_DIR=str(folder / "pip"))
    try:
        yield folder
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)


def timed(step: Callable[[], Any]) -> float:
    began = time.monotonic()
    step()
    return time.monotonic() - began


def fresh_build() -> dict[str, float]:
    """Seconds of each tooling step from an empty cache (and empty npm and pip caches)."""
    with fresh_registries_cache() as folder:
        cache = Cache(folder / "cache")
        figures = {"npm ci (workerd, pyodide)": timed(lambda: node_packages(cache))}
        packages = node_packages(cache)
        figures["Pyodide dev bundle"] = timed(lambda: build_bundle(cache, packages))
        figures["wheels of flue's Worker requirements"] = timed(
            lambda: download_wheels(cache, flue_worker_requirements())
        )
        figures["lay out the bench app"] = timed(lambda: lay_out(cache, app()))
        cold = LocalWorker(app(), folder / "run", cache=cache, ready_path="/noop")
        cold.start()
        assert cold.workerd.started_in is not None
        figures["first start of workerd"] = cold.workerd.started_in
        cold.stop()
        figures["total"] = sum(figures.values())
        return figures


def latencies(client: httpx.Client, method: str, urls: Iterator[str], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        url = next(urls)
        began = time.perf_counter()
        response = client.request(method, url, content="x" if method == "POST" else None)
        samples.append(time.perf_counter() - began)
        response.raise_for_status()
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p95_ms": percentile(samples, 0.95) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
    }


def forever(url: str) -> Iterator[str]:
    while True:
        yield url


def measure(count: int, starts: int) -> dict[str, Any]:
    cache = Cache.default(ROOT)
    results: dict[str, Any] = {"cold_start_s": [], "restart_after_kill_9_s": None, "requests": {}}
    with tempfile.TemporaryDirectory(prefix="flue-bench-workerd-") as scratch:
        for index in range(starts):
            worker = LocalWorker(app(), Path(scratch) / f"cold-{index}", cache=cache, ready_path="/noop")
            worker.start()
            results["cold_start_s"].append(worker.workerd.started_in)
            if index < starts - 1:
                worker.stop()
        worker.kill()
        worker.start()
        results["restart_after_kill_9_s"] = worker.workerd.started_in
        base = worker.url
        try:
            with httpx.Client(timeout=30) as client:
                for name, method, path in (
                    ("no object (Worker only)", "GET", "/noop"),
                    ("DO fetch, read", "GET", "/fetch/run_warm/read"),
                    ("DO fetch, one SQL write", "POST", "/fetch/run_warm/write"),
                    ("DO RPC, read", "GET", "/rpc/run_warm/read"),
                    ("DO RPC, one SQL write", "POST", "/rpc/run_warm/write"),
                ):
                    latencies(client, method, forever(base + path), 20)  # warm-up
                    results["requests"][name] = summary(latencies(client, method, forever(base + path), count))
                fresh = (f"{base}/rpc/run_new_{index}/write" for index in range(count))
                results["requests"]["DO RPC, first write to a new object"] = summary(
                    latencies(client, "POST", fresh, min(count, 100))
                )
        finally:
            worker.stop()
    return results


def write_results(name: str, results: dict[str, Any]) -> None:
    """Write ``results`` to ``bench/results/<name>-<time>.json`` and say where."""
    out = BENCH / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="sequential requests per measure (default 300)")
    parser.add_argument("--starts", type=int, default=3, help="cold starts to time (default 3)")
    parser.add_argument("--fresh", action="store_true", help="also time fetch + build from an empty cache")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.fresh:
        results["fresh_build_s"] = fresh_build()
        print("From an empty cache (npm and pip caches empty too):")
        for step, seconds in results["fresh_build_s"].items():
            print(f"  {step:<40} {seconds:6.1f} s")
    results.update(measure(args.count, args.starts))
    print("workerd start (s): cold " + ", ".join(f"{s:.2f}" for s in results["cold_start_s"]))
    print(f"  after kill -9, same storage: {results['restart_after_kill_9_s']:.2f}")
    print(f"{'request from the host (sequential)':<40} {'p50':>8} {'p95':>8} {'p99':>8}")
    for name, figures in results["requests"].items():
        print(f"  {name:<38} {figures['p50_ms']:6.2f}ms {figures['p95_ms']:6.2f}ms {figures['p99_ms']:6.2f}ms")
    write_results("workerd", results)


if __name__ == "__main__":
    main()
