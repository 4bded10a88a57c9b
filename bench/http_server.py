"""The server side of the HTTP benchmark (``bench/http_bench.py``), run as its own process.

``python -m bench.http_server MODE`` serves, with :func:`flue_core.http.serve` (uvicorn on
127.0.0.1, a free port), one of:

* ``sqlite``: ``create_app`` over a runtime with the local target's default store
  (``sqlite:///.flue/flue.db`` under the working directory, so the caller runs it in a temporary
  directory; ``synchronous`` left at its default);
* ``memory``: the same over ``memory://``;
* ``bare``: a plain Starlette route answering ``POST /workflows/noop`` with a 202 and a small JSON
  body, without Flue: the ceiling of uvicorn, Starlette and the client on this machine.

It prints its base URL on one line of stdout, then serves until its stdin is closed. Run reads are
granted to everyone (``authorize_run_read``), as an application would grant its own users.
"""

from __future__ import annotations

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

MODES = ("sqlite", "memory", "bare")


@workflow(name="noop", http=True)
async def noop(ctx: RunContext) -> None:
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


def _bare_app() -> Starlette:
    async def accept(request: Request) -> JSONResponse:
        await request.body()
        body = {"runId": "run_bare", "streamUrl": "/runs/run_bare", "offset": "-1"}
        return JSONResponse(body, status_code=202, headers={"Location": body["streamUrl"]})

    return Starlette(routes=[Route("/workflows/noop", accept, methods=["POST"])])


async def _serve_until_stdin_closes(app: Any) -> None:
    async with serve(app) as url:
        print(url, flush=True)
        # Readable at end of file, i.e. once the benchmark closes the pipe (no thread sits in a read).
        await anyio.wait_readable(sys.stdin.fileno())


async def main(mode: str) -> None:
    if mode == "bare":
        await _serve_until_stdin_closes(_bare_app())
        return
    options = {"store": "memory://"} if mode == "memory" else {}  # sqlite: the target's default store
    runtime = Runtime([noop, ticker], **options)
    async with runtime:
        await _serve_until_stdin_closes(create_app(runtime, authorize_run_read=lambda request, run: True))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        raise SystemExit(f"usage: python -m bench.http_server {{{','.join(MODES)}}}")
    anyio.run(main, sys.argv[1])
