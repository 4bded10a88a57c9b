"""An application whose in-process scheduler starts a workflow run every few seconds.

Each tick calls ``workflows.start()`` (the same admission as ``POST /workflows/daily-summary``) and
follows the run's event stream, printing every event. Stop with Ctrl-C; ``--runs N`` stops after N.
Runs are stored in SQLite under ``.flue/`` (the default), so ``flue runs`` shows them afterwards.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime

import anyio
from pydantic import BaseModel

from flue_core import RunContext, Runtime, runs, workflow, workflows


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


async def main(every: float, count: int | None) -> None:
    async with Runtime([daily_summary]):  # FLUE_STORE or sqlite:///.flue/flue.db
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
    args = parser.parse_args()
    try:
        anyio.run(main, args.every, args.runs)
    except KeyboardInterrupt:
        pass
