"""The server side of the HTTP benchmark (``bench/http_bench.py``), run as its own process.

``python -m bench.http_server MODE [STACK]`` serves, with :func:`flue_core.http.serve` (uvicorn on
127.0.0.1, a free port), one of:

* ``sqlite``: ``create_app`` over a runtime with the local target's default store
  (``sqlite:///.flue/flue.db`` under the working directory, so the caller runs it in a temporary
  directory; ``synchronous`` left at its default);
* ``memory``: the same over ``memory://``;
* ``starlette``: a plain Starlette route answering ``POST /workflows/noop`` with a 202 and a small JSON
  body, without Flue: the ceiling of uvicorn and Starlette on this machine;
* ``asgi``: the same answer from a bare ASGI callable, without Starlette: uvicorn's own ceiling.

``STACK`` is the event loop and HTTP parser: ``h11`` (asyncio and h11, what uvicorn uses without its
optional dependencies), ``uvloop`` (uvloop and httptools), or ``default`` (what ``flue_core.http.serve``
and the ``flue`` command pick: uvloop and httptools where they are installed).

It prints its base URL on one line of stdout, then serves until its stdin is closed. Run reads are
granted to everyone (``authorize_run_read``), as an application would grant its own users.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flue_core import RunContext, Runtime, workflow
from flue_core.http import create_app, serve
from flue_core.http.server import event_loop_options

MODES = ("sqlite", "memory", "starlette", "asgi")
CONCURRENCY_ENV = "FLUE_BENCH_CONCURRENCY"
STACKS = ("default", "h11", "uvloop")
#: The answer of the bare servers: a receipt's size and shape.
BARE_BODY = {"runId": "run_bare", "workflow": "noop", "streamUrl": "/runs/run_bare", "offset": "-1"}


@workflow(name="noop", http=True)
async def noop(ctx: RunContext, input: dict) -> None:
    """Takes a JSON object (the benchmark posts one, as a client would) and does nothing."""
    return None


@workflow(name="ticker", http=True)
async def ticker(ctx: RunContext, input: dict) -> None:
    """Waits until the file ``input["gate"]`` exists (the benchmark creates it once every follower is
    attached), then emits ``count`` ``tick`` events at ``rate`` per second on a fixed schedule (a late
    tick does not push the later ones back). Each carries ``t``, ``time.time()`` just before the emit."""
    gate = Path(input["gate"])
    while not gate.exists():
        await anyio.sleep(0.01)
    count, rate = int(input["count"]), float(input["rate"])
    began = time.monotonic()
    for i in range(count):
        await anyio.sleep(max(0.0, began + i / rate - time.monotonic()))
        ctx.emit("tick", {"i": i, "t": time.time()})


def _starlette_app() -> Starlette:
    async def accept(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(BARE_BODY, status_code=202, headers={"Location": BARE_BODY["streamUrl"]})

    return Starlette(routes=[Route("/workflows/noop", accept, methods=["POST"])])


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same answer with nothing but uvicorn: read the body, send the 202."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = json.dumps(BARE_BODY).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"location", BARE_BODY["streamUrl"].encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _serve_until_stdin_closes(app: Any, stack: str) -> None:
    options = {} if stack == "default" else {"http": "h11" if stack == "h11" else "httptools"}
    async with serve(app, **options) as url:
        print(url, flush=True)
        # Readable at end of file, i.e. once the benchmark closes the pipe (no thread sits in a read).
        await anyio.wait_readable(sys.stdin.fileno())


async def main(mode: str, stack: str) -> None:
    if mode in ("starlette", "asgi"):
        await _serve_until_stdin_closes(_starlette_app() if mode == "starlette" else _asgi_app, stack)
        return
    options = {"store": "memory://"} if mode == "memory" else {}  # sqlite: the target's default store
    if CONCURRENCY_ENV in os.environ:  # the local target's runs at a time (default 16)
        options["concurrency"] = int(os.environ[CONCURRENCY_ENV])
    runtime = Runtime([noop, ticker], **options)
    async with runtime:
        app = create_app(runtime, authorize_run_read=lambda request, run: True)
        await _serve_until_stdin_closes(app, stack)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in MODES or (sys.argv[2:] and sys.argv[2] not in STACKS):
        raise SystemExit(f"usage: python -m bench.http_server {{{','.join(MODES)}}} [{{{','.join(STACKS)}}}]")
    stack = sys.argv[2] if len(sys.argv) == 3 else "default"
    if stack == "h11":
        anyio.run(main, sys.argv[1], stack)
    elif stack == "uvloop":
        anyio.run(main, sys.argv[1], stack, backend_options={"use_uvloop": True})
    else:
        anyio.run(main, sys.argv[1], stack, **event_loop_options())
