"""The Worker of ``bench/cloudflare.py``: Flue on the Cloudflare target with the benchmark's workflows.

``noop`` does nothing (admission, end to end). ``ticker`` waits durably for the signal ``go`` (sent
with ``POST /bench/go/<run_id>`` once the benchmark's SSE reader is attached), then emits ``count``
``tick`` events at ``rate`` per second, each carrying ``t``: ``time.time()`` just before the emit.
Run reads are granted to everyone.
"""

import time
from urllib.parse import urlsplit

import anyio
from workers import Response

from flue_cloudflare import FlueApp, FlueWorker
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes
from flue_core import RunContext, runs, workflow


@workflow(name="noop", http=True)
async def noop(ctx: RunContext) -> None:
    return None


@workflow(name="ticker", http=True)
async def ticker(ctx: RunContext, input: dict) -> None:
    await ctx.wait_for_signal("go")
    count, rate = int(input["count"]), float(input["rate"])
    began = time.monotonic()
    for i in range(count):
        await anyio.sleep(max(0.0, began + i / rate - time.monotonic()))
        ctx.emit("tick", {"i": i, "t": time.time()})


app = FlueApp([noop, ticker], authorize_run_read=lambda request, run: True)


class Default(FlueWorker):
    async def fetch(self, request):
        parts = urlsplit(request.url).path.strip("/").split("/")
        if parts[:2] == ["bench", "go"] and len(parts) == 3:
            await runs.signal(parts[2], "go")
            return Response("", status=202)
        return await app.serve(request, self.env)
