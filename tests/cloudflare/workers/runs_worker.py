"""The runs Worker: lifecycle workflows (``lifecycle_workflows.py``) executed by their own Durable
Objects, Flue's HTTP surface (signals and schedules included), general streams, a cron trigger and a
queue that start runs.

Beyond Flue's routes: ``POST /test/queue`` sends the body to the queue ``jobs``, whose consumer
starts a ``job`` run per message.
"""

from urllib.parse import urlsplit

from workers import Response

from flue_cloudflare import FlueApp, FlueWorker
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes
from flue_core import workflows
from flue_core.streams import ReadOptions
from lifecycle_workflows import HTTP_OPTIONS, WORKFLOWS, cron_tick, job

# Long-polls answer 204 after 2 s: the Durable Streams conformance suite waits for such timeouts.
app = FlueApp(WORKFLOWS, streams=True, stream_options=ReadOptions(long_poll_timeout=2.0), **HTTP_OPTIONS)


class Default(FlueWorker):
    async def fetch(self, request):
        if urlsplit(request.url).path == "/test/queue" and request.method == "POST":
            await self.env.JOBS.send(await request.text())
            return Response("", status=202)
        return await app.serve(request, self.env)

    async def scheduled(self, controller, env=None, ctx=None):
        tick = {"cron": controller.cron, "scheduledTime": int(controller.scheduledTime)}
        await workflows.start(cron_tick, input=tick, key=f"cron:{tick['scheduledTime']}")

    async def queue(self, batch, env=None, ctx=None):
        for message in batch.messages:
            await workflows.start(job, input={"body": message.body}, key=f"job:{message.id}")
            message.ack()
