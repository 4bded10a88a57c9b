"""The example's workflows: a digest started by the cron trigger, a job started per queue message.

Plain Flue workflows: nothing here is specific to Cloudflare, and the same code runs on the local
target. Steps are stored in the run's Durable Object; the sleep is the object's alarm.
"""

from __future__ import annotations

from pydantic import BaseModel

from flue_core import RunContext, workflow


class DigestRequest(BaseModel):
    scheduled_at: int  # the cron tick, epoch milliseconds (controller.scheduledTime)


class Job(BaseModel):
    body: str


def collect(since: int) -> list[str]:
    return [f"item-{n}" for n in range(3)]  # stands in for reading a feed, a database...


@workflow(name="digest", http=True)
async def digest(ctx: RunContext, input: DigestRequest) -> dict:
    items = await ctx.step("collect", collect, input.scheduled_at)
    ctx.progress(1, 2, message=f"collected {len(items)} items")
    await ctx.sleep(1)  # durable: the run waits in its object, whose alarm resumes it
    summary = await ctx.step("summarise", lambda: ", ".join(items))
    ctx.progress(2, 2, message="summarised")
    return {"tick": input.scheduled_at, "summary": summary}


@workflow(name="process-job", retries=2)
async def process_job(ctx: RunContext, input: Job) -> dict:
    words = await ctx.step("count-words", lambda: len(input.body.split()))
    ctx.log.info("processed a job", words=words)
    return {"body": input.body, "words": words}
