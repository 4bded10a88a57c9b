"""The flow Worker: workflows with flow control (``flow_workflows.py``) executed by their own Durable
Objects: per-key concurrency, priorities, a rate limit and debounced starts."""

from flue_cloudflare import FlueApp, FlueWorker
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes
from flow_workflows import HTTP_OPTIONS, WORKFLOWS

app = FlueApp(WORKFLOWS, **HTTP_OPTIONS)


class Default(FlueWorker):
    async def fetch(self, request):
        return await app.serve(request, self.env)
