"""The phases of a run's life that ``bench/run cpu`` charges CPU to, and the functions that make each.

Each phase is a list of ``module:qualname`` paths. A sampled stack (py-spy's raw format) belongs to the
phase of its innermost frame listed here (a closure, ``Class.method.<locals>.apply``, to its function's),
so a function is charged for the work it does itself: the store call inside ``finish_run`` is the
store's, the event it encodes "event encode". A stack with no listed frame is the event loop's own work
(on the loop's thread: selecting, callbacks, task steps) or the thread hop (on SQLite's connection
thread: waiting for work, waking the loop). ``python -m bench.cpu_phases SAMPLES [PHASE]`` lists the
innermost frames of one phase's samples: where to look next.
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from pathlib import Path

WORKFLOW_CODE = "step (the workflow's code)"
GARBAGE = "garbage collector"
LOOP_REST = "event loop, tasks and the rest"
HOP = "thread or network hop"
CALLER = "the caller (the benchmark's loop)"

_STORE_METHODS = (
    "admit", "admit_claimed", "_admit", "claim", "finish", "append", "flush", "save_step", "load_steps",
    "get", "read", "take_ready", "next_wake", "wake_due", "requeue", "suspend", "heartbeat", "_update",
    "_index", "_changed", "_announce", "_write",
)  # fmt: skip

#: (phase, paths), in the order of the table's rows. The first phases only occur over HTTP.
PHASES: list[tuple[str, list[str]]] = [
    (
        "HTTP: parse and route (uvicorn, Starlette)",
        [
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.run_asgi",
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.receive",
            "uvicorn.protocols.http.h11_impl:H11Protocol",
            "uvicorn.protocols.http.h11_impl:RequestResponseCycle.run_asgi",
            "uvicorn.protocols.http.h11_impl:RequestResponseCycle.receive",
            "uvicorn.middleware.proxy_headers:ProxyHeadersMiddleware",
            "starlette.applications:Starlette",
            "starlette.middleware.errors:ServerErrorMiddleware",
            "starlette.middleware.exceptions:ExceptionMiddleware",
            "starlette._exception_handler:wrap_app_handling_exceptions",
            "starlette.routing:Router",
            "starlette.routing:Route",
            "starlette.routing:request_response",
            "starlette.requests:Request",
            "starlette.datastructures:Headers",
            "flue_core.http.app:LearnPublicUrl",
            "flue_core.http.error_handling:ErrorEnvelope",
            "flue_core.http.endpoint:BoundEndpoint",
            "flue_core.http.route_middleware:through_middleware",
        ],
    ),
    (
        "HTTP: endpoint (query, body, 202)",
        [
            "flue_core.http.workflow_route:post_workflow",
            "flue_core.http.workflow_route:accepted",
            "flue_core.http.workflow_route:request_principal",
            "flue_core.http.query:parse_query",
            "flue_core.http.query:idempotency_key",
            "flue_core.http.body:read_json",
            "flue_core.http.body:read_limited",
            "flue_core.http.config:stream_path",
            "starlette.responses:Response.__init__",
            "starlette.responses:Response.init_headers",
            "starlette.responses:Response.render",
        ],
    ),
    (
        "HTTP: response write",
        [
            "starlette.responses:Response.__call__",
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.send",
            "uvicorn.protocols.http.h11_impl:RequestResponseCycle.send",
        ],
    ),
    (
        "validation and snapshot",
        ["flue_core.definition:Workflow.snapshot_input", "flue_core.definition:Workflow.parse_input", "flue_core.snapshot:snapshot"],
    ),
    (
        "hooks (dispatch, run id)",
        [
            "flue_core.plugins",
            "pluggy",
            "ulid",
            "flue_core.defaults:flue_generate_run_id",
            "flue_core.admission:_new_run_id",
            "flue_core.admission:_carrier",
            "flue_core.admission:_target_schedules",
            "flue_core.runtime:Runtime.notify_soon",
            "flue_core.otel",
        ],
    ),
    (
        "admission (the rest)",
        ["flue_core.workflows", "flue_core.admission", "flue_core.runtime:Runtime.receipt", "flue_core.runtime:Runtime.receipt_for",
         "flue_core.runtime:current_runtime", "flue_core.store:NewRun"],
    ),  # fmt: skip
    (
        "store: Python on the event loop",
        [f"flue_node_like.{module}:{cls}.{name}" for module, cls in (("memory", "MemoryStore"), ("sqlite", "SqliteStore"),
         ("redis_store", "RedisStore")) for name in _STORE_METHODS]
        + ["flue_node_like.sqlite_rows", "flue_node_like.redis_rows", "flue_core.snapshot:dumps", "flue_core.snapshot:loads"],
    ),  # fmt: skip
    ("store: SQL (connection thread)", ["flue_node_like.sqlite_writer:_apply_batch", "flue_node_like.sqlite_writer:_run_batch"]),
    (
        HOP,
        [
            "flue_node_like.sqlite_writer:BatchWriter",
            "flue_node_like.sqlite_writer:_Op",
            "flue_node_like.sqlite_connection:in_connection_thread",
            "flue_node_like.sqlite:SqliteStore._submit",
            "flue_node_like.sqlite:SqliteStore._in_thread",
            "aiosqlite.core:Connection._execute",
            "flue_node_like.redis_link",
            "flue_node_like.redis_store:RedisStore._send",
            "flue_node_like.redis_store:RedisStore._write",
            "flue_node_like.redis_store:RedisStore._read",
            "flue_node_like.redis_store:RedisStore._answer",
            "flue_node_like.redis_store:RedisStore._send_appends",
            "flue_node_like.redis_store:RedisStore._send_batch",
            "flue_node_like.redis_store:RedisStore._appended",
        ],
    ),
    (
        "claim (slot, hand-over, executor task)",
        ["flue_node_like.target", "flue_core.defaults:flue_schedule_run", "flue_core.execution:Executor.execute",
         "anyio.streams.memory"],
    ),  # fmt: skip
    (
        "start (context, cancel scope)",
        ["flue_core.execution:Executor._attempt", "flue_core.execution:Executor._execute", "flue_core.attempt:AttemptControl.__init__",
         "flue_core.context:RunContext.__init__", "flue_core.durable:Calls.__init__"],
    ),  # fmt: skip
    (WORKFLOW_CODE, ["flue_core.durable:Calls.step", "bench.cpu_scenario:noop"]),
    ("event encode", ["flue_core.attempt:AttemptControl.write", "flue_core.store:event_json", "flue_core.store:NewEvent"]),
    (
        "finish (outcome, run_end)",
        ["flue_core.execution:Executor._finish", "flue_core.execution:finish_run", "flue_core.store:Outcome"],
    ),
    (
        "records and timestamps",
        ["flue_core.models", "pydantic.main:BaseModel.model_copy", "pydantic.main:BaseModel.__copy__",
         "pydantic.main:BaseModel.model_dump", "pydantic.main:BaseModel.__init__"],
    ),  # fmt: skip
    (
        "notification of followers",
        ["flue_core.changes", "flue_core.runs:wait", "flue_core.runs:result", "flue_node_like.redis_subscriptions"],
    ),
    (CALLER, ["bench.cpu_scenario:inprocess", "bench.cpu_scenario:admit_sequentially"]),
]


def _index() -> dict[str, list[tuple[str, str]]]:
    """File (as py-spy shows it: relative to its ``sys.path`` entry) → [(qualname or "", phase)]; a
    path without ``:qualname`` claims every function of its module (or package)."""
    files: dict[str, list[tuple[str, str]]] = {}
    for phase, paths in PHASES:
        for path in paths:
            module, _, qualname = path.partition(":")
            base = module.replace(".", "/")
            for file in (base + ".py", base + "/"):
                files.setdefault(file, []).append((qualname, phase))
    return files


_FILES = _index()


def phase_of(frame: str) -> str | None:
    """The phase of one py-spy frame, ``qualname (file:line)``, or ``None``."""
    name, _, where = frame.rpartition(" (")
    file = where.rsplit(":", 1)[0]
    candidates = [file]
    while "/" in file:  # the module's packages, for paths that claim a whole package
        file = file.rsplit("/", 1)[0]
        candidates.append(file + "/")
    for candidate in candidates:
        for qualname, phase in _FILES.get(candidate, ()):
            if not qualname or name == qualname or name.startswith(qualname + "."):
                return phase
    return None


def _line_of(fn: object, text: str) -> int | None:
    """The line of ``fn``'s source that holds ``text`` (where a thread waits), or ``None``."""
    try:
        lines, first = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None
    return next((first + i for i, line in enumerate(lines) if text in line), None)


def _waits() -> set[str]:
    """Innermost frames, as py-spy writes them (``qualname (file:line)``), of a thread waiting for
    something: py-spy samples a thread whether it runs or waits, so these samples are dropped."""
    import selectors

    import aiosqlite.core

    places = [
        (selectors.EpollSelector.select, "EpollSelector.select", "selectors.py", "self._selector.poll("),
        (selectors.PollSelector.select, "PollSelector.select", "selectors.py", "self._selector.poll("),
        (aiosqlite.core._connection_worker_thread, "_connection_worker_thread", "aiosqlite/core.py", "tx.get()"),
    ]
    return {f"{name} ({file}:{line})" for fn, name, file, text in places if (line := _line_of(fn, text)) is not None}


_WAITS = _waits()
#: Innermost frames that wait whatever their line: the loop's own run under uvloop (its C code, waiting
#: in epoll, shows no Python frame), threads parked on a lock or a queue.
_WAITING = ("BaseEventLoop.run_until_complete (", "Runner.run (", "Condition.wait (", "Event.wait (threading", "WorkerThread.run (")


def waiting(frame: str) -> bool:
    return frame in _WAITS or frame.startswith(_WAITING)


def classify(frames: list[str], main: bool) -> str | None:
    """The phase of a stack (outermost frame first) sampled on the loop's thread (``main``) or another;
    ``None`` for a thread waiting (:func:`waiting`)."""
    if not frames or waiting(frames[-1]):
        return None
    for frame in reversed(frames):
        phase = phase_of(frame)
        if phase is not None:
            return phase
    return LOOP_REST if main else HOP


def read_samples(path: Path, labels: dict[int, str]) -> dict[str, Counter[str]]:
    """Samples of a ``py-spy record --format raw --threads`` file by thread label (``labels``: native id
    → label, ``main`` for the loop's thread; unknown threads are ``other``) and phase."""
    out: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():  # a frame name py-spy could not read whole
            continue
        head, *frames = stack.split(";")  # head: "thread (1234): MainThread"
        tid = int(head[len("thread (") : head.index(")")]) if head.startswith("thread (") else 0
        label = labels.get(tid, "other")
        phase = classify(frames, label == "main")
        if phase is not None:
            out.setdefault(label, Counter())[phase] += int(count)
    return out


def main() -> None:
    path = Path(sys.argv[1])
    wanted = sys.argv[2] if len(sys.argv) > 2 else LOOP_REST
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        head, *frames = stack.split(";")
        if classify(frames, "MainThread" in head) == wanted:
            leaves[" < ".join(reversed(frames[-3:]))] += int(count)
    total = sum(leaves.values()) or 1
    for leaf, n in leaves.most_common(30):
        print(f"{100 * n / total:5.1f}%  {leaf}")


if __name__ == "__main__":
    main()
