"""An application whose in-process scheduler starts a workflow run every few seconds.

Each tick calls ``workflows.start()`` (the same admission as ``POST /workflows/daily-summary``) and
follows the run's event stream, printing every event. Meanwhile the app serves its HTTP API with the
dashboard on 127.0.0.1:3583 and prints a link to it: open the link in a browser to watch the runs
live (``--no-dashboard`` to skip). Stop with Ctrl-C; ``--runs N`` stops after N. Runs are stored in
SQLite under ``.flue/`` (the default), so ``flue runs`` and ``flue dashboard`` show them afterwards.
"""

from __future__ import annotations

import argparse
import random
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime

import anyio
from pydantic import BaseModel

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.cli.stopping import sigterm_as_ctrl_c
from flue_core.dashboard import LinkAccess
from flue_core.http import create_app, serve


class SummaryRequest(BaseModel):
    prompt: str
    scheduled_at: datetime


@workflow(name="daily-summary", retries=1)
async def daily_summary(ctx: RunContext, input: SummaryRequest) -> dict:
    """Gather a few sources, then summarise them."""
    ctx.log.info("summarising", prompt=input.prompt)
    sources = ["inbox", "calendar", "tickets"]
    counts = {}
    for done, source in enumerate(sources, start=1):
        counts[source] = await ctx.step(f"fetch-{source}", fetch, source)
        ctx.progress(done, len(sources), message=f"fetched {source}")
    ctx.emit("summary_ready", {"items": sum(counts.values())})
    return {"prompt": input.prompt, "counts": counts}


async def fetch(source: str) -> int:
    await anyio.sleep(0.2)  # stands in for real I/O
    return random.randint(1, 20)


async def follow(run_id: str) -> None:
    async for event in runs.events(run_id, follow=True):
        print(f"  {event.offset}  {event.type:<14} {event.data}")


async def serve_dashboard(runtime: Runtime, port: int, opened: AsyncExitStack) -> str:
    """Serve the app with its dashboard on ``port`` (another free one if it is taken); the link to open.

    The link carries a secret token: whoever opens it may read and cancel the runs (LinkAccess)."""
    access = LinkAccess()
    app = create_app(runtime, dashboard=True, **access.app_options())
    try:
        url = await opened.enter_async_context(serve(app, port=port))
    except OSError:
        url = await opened.enter_async_context(serve(app, port=0))
    return access.link(f"{url}/dashboard/")


async def main(every: float, count: int | None, dashboard_port: int | None) -> None:
    async with AsyncExitStack() as opened:
        runtime = await opened.enter_async_context(Runtime([daily_summary]))  # FLUE_STORE or sqlite:///.flue/flue.db
        if dashboard_port is not None:
            link = await serve_dashboard(runtime, dashboard_port, opened)
            print(f"dashboard: {link}\n  open it in a browser to watch the runs live\n")
        started = 0
        async with anyio.create_task_group() as tasks:
            while count is None or started < count:
                receipt = await workflows.start(
                    daily_summary,
                    input={"prompt": "What happened today?", "scheduled_at": datetime.now(UTC).isoformat()},
                )
                started += 1
                print(f"started {receipt.run_id} ({receipt.stream_url})")
                tasks.start_soon(follow, receipt.run_id)
                if count is None or started < count:
                    await anyio.sleep(every)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between runs (default 3)")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many runs (default: never)")
    parser.add_argument("--port", type=int, default=3583, help="port of the app and its dashboard (default 3583)")
    parser.add_argument("--no-dashboard", action="store_true", help="do not serve the app and its dashboard")
    args = parser.parse_args()
    with sigterm_as_ctrl_c(), suppress(KeyboardInterrupt):  # a deploy's SIGTERM stops it as Ctrl-C does
        anyio.run(main, args.every, args.runs, None if args.no_dashboard else args.port)
