"""CPU per run, by phase: where an admitted-and-executed run's microseconds go (``bench/run cpu``).

Each column is a store (memory, SQLite with ``synchronous=FULL``, Redis with AOF ``everysec``) served
in-process or over HTTP:

* **in-process**: one caller awaits ``workflows.start(noop, input={"n": i})`` ``--runs`` times, the
  runs executing in the same process meanwhile, then waits until all ended (``bench.cpu_scenario``);
* **HTTP**: ``create_app`` on ``flue_core.http.serve`` (uvloop + httptools) in a process of its own,
  pinned to CPU 0; wrk (32 connections, on CPU 1) posts ``{"caller": "wrk", "n": 1}`` to
  ``/workflows/noop`` for ``--seconds``; the stretch ends once every admitted run ended. Beside them, a
  bare Starlette route answering the same request (``bench.http_server starlette uvloop``).

CPU per run is the process's CPU over the stretch (``/proc``: user and system per thread; exact
totals from ``schedstat``) divided by the runs admitted and executed in it; the garbage collector's
share is timed exactly (``gc.callbacks``). Phases come from py-spy sampling the process 1,000 times a
second without stopping it (``--nonblocking``), in rounds of their own: each thread's CPU (less the
collector's) is split by the share of its samples in each phase (:mod:`bench.cpu_phases`). Rounds
interleave the columns, plain and sampled; figures are medians over ``--rounds``. Redis's own CPU per
run (another process) is shown apart. Prints a Markdown table; writes ``bench/results/cpu-<time>.json``.

``--baseline DIR`` measures another tree too (an export of an earlier commit: ``git archive <commit> |
tar -x -C DIR``), its columns interleaved with this tree's round by round, so that both see the same
load on the machine; it prints both tables and the ratio of their CPU per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.cpu_report import comparison, table
from bench.http_process import CLIENT_CPU, RESULTS, SERVER_CPU, server
from bench.http_wrk import run_wrk

ROOT = Path(__file__).parent.parent
BODY = '{"caller": "wrk", "n": 1}'


def _env(tree: Path, redis_pid: int | None, keep: Path | None = None) -> dict[str, str]:
    """The environment of a measured process: Flue (and this benchmark) imported from ``tree``."""
    env = {k: v for k, v in os.environ.items() if k not in ("FLUE_STORE", "FLUE_TARGET", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)
    if redis_pid is not None:
        env["FLUE_CPU_REDIS_PID"] = str(redis_pid)
    if keep is not None:
        env["FLUE_CPU_SAMPLES"] = str(keep)
    return env


def inprocess(
    tree: Path, store: str, url: str, runs: int, sample: bool, redis_pid: int | None, keep: Path | None
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.cpu_scenario", "inprocess", store, url, str(runs)]
    env = _env(tree, redis_pid, keep)
    done = subprocess.run(command + (["--sample"] if sample else []), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"bench.cpu_scenario {store} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def http_server(
    tree: Path, store: str, url: str, sample: bool, redis_pid: int | None, keep: Path | None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    command = [sys.executable, "-m", "bench.cpu_scenario", "serve", store, url] + (["--sample"] if sample else [])
    with tempfile.TemporaryDirectory(prefix="flue-cpu-") as scratch:
        process = subprocess.Popen(
            command, cwd=scratch, env=_env(tree, redis_pid, keep), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}),
        )  # fmt: skip
        try:
            assert process.stdout is not None
            base = process.stdout.readline().strip()
            if not base.startswith("http://"):
                raise SystemExit(f"The {store} server did not start (exit code {process.wait()}).")
            yield process, base
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _ask(process: subprocess.Popen[str], line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def over_http(
    tree: Path, store: str, url: str, seconds: float, sample: bool, redis_pid: int | None, keep: Path | None
) -> dict[str, Any]:
    with http_server(tree, store, url, sample, redis_pid, keep) as (process, base):
        run_wrk(f"{base}/workflows/noop", body=BODY, connections=32, seconds=2, cpu=CLIENT_CPU)  # warm-up
        _ask(process, "start")
        load = run_wrk(f"{base}/workflows/noop", body=BODY, connections=32, seconds=seconds, cpu=CLIENT_CPU)
        figures = json.loads(_ask(process, "stop"))
    statuses = {int(code): n for code, n in load["statuses"].items()}
    if set(statuses) != {202} or any((load.get("errors") or {}).values()):
        raise SystemExit(f"{store} over HTTP answered {statuses} (errors {load.get('errors')}): not all 202.")
    figures.update(runs=statuses[202], requests_per_s=load["per_s"], p50_ms=load["p50_ms"])
    return figures


def bare_route(seconds: float) -> dict[str, Any]:
    """The same request answered by a plain Starlette route on the same stack: CPU per request."""
    with server("starlette", pin=True, stack="uvloop") as srv:
        run_wrk(f"{srv.url}/workflows/noop", body=BODY, connections=32, seconds=2, cpu=CLIENT_CPU)
        before = _proc_cpu(srv.process.pid)
        load = run_wrk(f"{srv.url}/workflows/noop", body=BODY, connections=32, seconds=seconds, cpu=CLIENT_CPU)
        after = _proc_cpu(srv.process.pid)
    requests = load["requests"]
    return {
        "runs": requests,
        "requests_per_s": load["per_s"],
        "user": after[0] - before[0],
        "sys": after[1] - before[1],
    }


def prepare_baseline(tree: Path) -> None:
    """Give the baseline tree this benchmark's own files, so both trees are measured alike."""
    for name in ("cpu_scenario.py", "cpu_phases.py"):
        shutil.copyfile(Path(__file__).with_name(name), tree / "bench" / name)


def _proc_cpu(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every column, plain and sampled, of every tree (this one, then ``--baseline``), round by round."""
    columns = [(s, "inprocess") for s in args.stores if args.inprocess] + [(s, "http") for s in args.stores if args.http]
    trees = [("after", ROOT)] + ([("before", args.baseline)] if args.baseline else [])
    rounds: dict[str, list[dict[str, Any]]] = {}
    redis = None
    scratch = tempfile.TemporaryDirectory(prefix="flue-cpu-redis-")
    try:
        if "redis" in args.stores:
            from flue_node_like.redis_server import RedisServer

            redis = RedisServer(Path(scratch.name)).start()
            assert redis.process is not None
            os.sched_setaffinity(redis.process.pid, {CLIENT_CPU})  # off the event loop's CPU (see cpu_scenario)
        for number in range(args.rounds):
            for store, where in columns:
                for label, tree in trees:
                    for sample in (False, True):
                        prefix = f"cpu{number}{where[0]}{int(sample)}{label[0]}"
                        url = redis.url(prefix=prefix) if store == "redis" and redis else "-"
                        pid = redis.process.pid if store == "redis" and redis and redis.process else None
                        name = f"{label}: {store} {where}{' sampled' if sample else ''}"
                        print(f"round {number + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                        keep = None
                        if args.keep_samples and sample:
                            keep = args.keep_samples / f"{label}-{store}-{where}-{number + 1}.txt"
                        if where == "inprocess":
                            result = inprocess(tree, store, url, args.runs, sample, pid, keep)
                        else:
                            result = over_http(tree, store, url, args.seconds, sample, pid, keep)
                        rounds.setdefault(name, []).append(result)
            if args.http:
                print(f"round {number + 1}/{args.rounds}: bare Starlette route", file=sys.stderr, flush=True)
                rounds.setdefault("bare", []).append(bare_route(args.seconds))
    finally:
        if redis is not None:
            redis.stop()
        scratch.cleanup()
    return {"columns": [f"{s} {w}" for s, w in columns], "trees": [label for label, _ in trees], "rounds": rounds}


def summarise(measured: dict[str, Any], tree: str) -> dict[str, Any]:
    """Per column of ``tree``: medians of the plain rounds per run, and the phases from the pooled samples."""
    out: dict[str, Any] = {}
    for column in measured["columns"]:
        plain, sampled = measured["rounds"][f"{tree}: {column}"], measured["rounds"][f"{tree}: {column} sampled"]
        per_run = lambda key, rows=plain: statistics.median(r[key] / r["runs"] * 1e6 for r in rows)  # noqa: E731
        threads = {
            label: statistics.median(r["threads"].get(label, {"ns": 0})["ns"] / r["runs"] / 1e3 for r in plain)
            for label in {label for r in plain for label in r["threads"]}
        }
        gc = {
            label: statistics.median(r["gc_ns"].get(label, 0) / r["runs"] / 1e3 for r in plain)
            for label in {label for r in plain for label in r["gc_ns"]}
        }
        samples: dict[str, Counter[str]] = {}
        for r in sampled:
            for label, counts in r["samples"].items():
                samples.setdefault(label, Counter()).update(counts)
        phases: Counter[str] = Counter()
        for label, cpu in threads.items():
            counts = samples.get(label) if label != "other" else None
            busy = cpu - gc.get(label, 0.0)
            if not counts:
                phases["other threads"] += busy
                continue
            total = sum(counts.values())
            for phase, n in counts.items():
                phases[phase] += busy * n / total
        phases["garbage collector"] = sum(gc.values())
        summary = {
            "user_us": per_run("user"),
            "sys_us": per_run("sys"),
            "threads_us": threads,
            "phases_us": dict(phases),
            # In-process: admitted and executed per second (the stretch ends when the last run ended).
            "runs_per_s": statistics.median(r.get("requests_per_s") or r["runs"] / r["seconds"] for r in plain),
            "admissions_per_s": statistics.median(r["runs"] / r["admission_seconds"] for r in plain if "admission_seconds" in r)
            if any("admission_seconds" in r for r in plain) else None,
        }
        if any("redis_user" in r for r in plain):
            summary["redis_us"] = statistics.median((r["redis_user"] + r["redis_sys"]) / r["runs"] * 1e6 for r in plain)
        out[column] = summary
    if "bare" in measured["rounds"]:
        bare = measured["rounds"]["bare"]
        out["bare"] = {
            "cpu_us": statistics.median((r["user"] + r["sys"]) / r["runs"] * 1e6 for r in bare),
            "runs_per_s": statistics.median(r["requests_per_s"] for r in bare),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000, help="in-process runs per round (default 5000)")
    parser.add_argument("--seconds", type=float, default=10, help="wrk's load per HTTP round (default 10 s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are shown (default 3)")
    parser.add_argument("--stores", default="memory,sqlite,redis", help="columns (default memory,sqlite,redis)")
    parser.add_argument("--no-http", dest="http", action="store_false", help="in-process columns only")
    parser.add_argument("--no-inprocess", dest="inprocess", action="store_false", help="HTTP columns only")
    parser.add_argument("--baseline", type=Path, help="also measure this tree (an export of another commit), round by round")
    parser.add_argument("--keep-samples", type=Path, help="keep py-spy's raw samples in this directory (python -m bench.cpu_phases FILE [PHASE])")
    args = parser.parse_args()
    args.stores = [s for s in args.stores.split(",") if s]
    if args.keep_samples:
        args.keep_samples.mkdir(parents=True, exist_ok=True)
    if args.baseline:
        prepare_baseline(args.baseline)
    measured = measure(args)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    shown = {**vars(args), "keep_samples": str(args.keep_samples), "baseline": str(args.baseline)}
    record: dict[str, Any] = {"python": platform.python_version(), "args": shown, "measured": measured}
    out.write_text(json.dumps(record, indent=1))  # the measurements first: they took a while
    summary = {tree: summarise(measured, tree) for tree in measured["trees"]}
    for tree in measured["trees"]:
        if len(measured["trees"]) > 1:
            print(f"\n{tree} ({ROOT if tree == 'after' else args.baseline}):\n")
        print(table(summary[tree], measured["columns"]))
    if args.baseline:
        print("\n" + comparison(summary["before"], summary["after"], measured["columns"]))
    out.write_text(json.dumps({**record, "summary": summary}, indent=1))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
