"""The Worker of ``bench/cloudflare.py --trace``: the benchmark's Worker with a timestamp taken at each
boundary a request crosses — the Worker's handler, the ASGI bridge, the admission pipeline, every
operation the store asks of a Durable Object (from the Worker, or from inside the run's own object),
each object's constructor, operations and alarm —
kept in the isolate (which every object of a local workerd shares) and read with ``GET /bench/trace``
(which also clears them). The clock inside a Worker moves in whole milliseconds: a mark is only
meaningful as a mean over many requests.
"""

import json
import time
from urllib.parse import urlsplit

from workers import Response

import flue_bench
import flue_core.http.workflow_route as workflow_route
from flue_cloudflare import app as flue_app
from flue_cloudflare import store
from flue_cloudflare.objects import FlueObject
from flue_cloudflare.run_object import RunObject
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes

MARKS: list[tuple[str, float]] = []


def mark(label: str) -> None:
    MARKS.append((label, time.perf_counter()))


def around(owner, name, label):
    """Mark ``label`` before and ``label done`` after each call of ``owner.name`` (a coroutine function)."""
    original = getattr(owner, name)

    async def marked(*args, **kwargs):
        mark(label)
        try:
            return await original(*args, **kwargs)
        finally:
            mark(f"{label} done")

    setattr(owner, name, marked)


around(flue_app, "serve_asgi", "worker: ASGI bridge")
around(workflow_route, "admit", "worker: admission pipeline")
around(store.ObjectStore, "admit", "worker: store.admit")
_call = store.ObjectStore._call


async def call(self, binding, name, op, payload):
    mark(f"store: {op}")
    try:
        return await _call(self, binding, name, op, payload)
    finally:
        mark(f"store: {op} answered")


store.ObjectStore._call = call
_construct = RunObject.__init__


def construct(self, ctx, env):
    mark("run object: constructor")
    _construct(self, ctx, env)
    mark("run object: constructed")


RunObject.__init__ = construct
_op = FlueObject.op


async def op(self, name, body):
    where = "run object" if isinstance(self, RunObject) else "index object" if self.binding == "FLUE_INDEX" else "object"
    mark(f"{where}: {name}")
    try:
        return await _op(self, name, body)
    finally:
        mark(f"{where}: {name} done")


FlueObject.op = op
around(RunObject, "alarm", "run object: alarm")
app = flue_bench.app


class Default(flue_bench.Default):
    async def fetch(self, request):
        if urlsplit(request.url).path == "/bench/trace":
            marks = json.dumps(MARKS)
            MARKS.clear()
            return Response(marks)
        mark("worker: fetch")
        try:
            return await super().fetch(request)
        finally:
            mark("worker: fetch done")
