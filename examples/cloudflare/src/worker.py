"""A Flue application as a Python Worker: a cron trigger starts a ``digest`` run, each message of the
queue ``jobs`` a ``process-job`` run, and Flue's HTTP surface serves the runs.

Every run lives in its own Durable Object (the classes below are the Cloudflare target's, exported
here so that the Workers runtime finds them). ``POST /jobs`` puts its body on the queue. Run reads
and the listing are granted to requests carrying ``Authorization: Bearer <READ_TOKEN>`` (a secret
on Cloudflare: ``wrangler secret put READ_TOKEN``; a var locally).
"""

from urllib.parse import urlsplit

from workers import Response

from digest_workflows import digest, process_job
from flue_cloudflare import FlueApp, FlueWorker
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes
from flue_core import workflows


def reader(request, run=None):
    token = getattr(request.scope.get("env"), "READ_TOKEN", None)
    return bool(token) and request.headers.get("authorization") == f"Bearer {token}"


app = FlueApp([digest, process_job], authorize_run_read=reader, list_runs_enabled=True, authorize_run_list=reader)


class Default(FlueWorker):
    async def fetch(self, request):
        if urlsplit(request.url).path == "/jobs" and request.method == "POST":
            await self.env.JOBS.send(await request.text())
            return Response("", status=202)
        return await app.serve(request, self.env)

    async def scheduled(self, controller, env=None, ctx=None):
        tick = int(controller.scheduledTime)
        # The tick in the key: a tick delivered twice starts one run.
        await workflows.start(digest, input={"scheduled_at": tick}, key=f"digest:{tick}")

    async def queue(self, batch, env=None, ctx=None):
        for message in batch.messages:
            await workflows.start(process_job, input={"body": message.body}, key=f"job:{message.id}")
            message.ack()
