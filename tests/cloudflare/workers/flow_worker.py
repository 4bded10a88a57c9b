"""The flow Worker: workflows with flow control (``flow_workflows.py``) executed by their own Durable
Objects: per-key concurrency, priorities, a rate limit and debounced starts.

``POST /limits/<name>/<operation>`` performs one operation of the limit object ``name`` (a test's
stand-in for a run's object, e.g. one of a deploy that raised a workflow's limit)."""

from urllib.parse import unquote, urlsplit

from workers import Response

from flue_cloudflare import FlueApp, FlueWorker, calls, codec
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes
from flow_workflows import HTTP_OPTIONS, WORKFLOWS

app = FlueApp(WORKFLOWS, **HTTP_OPTIONS)
LIMITS = "/limits/"


class Default(FlueWorker):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path.startswith(LIMITS) and request.method == "POST":
            name, _, op = path[len(LIMITS) :].partition("/")
            limit = calls.stub(self.env, calls.LIMITS, unquote(name))
            answer = await calls.call(limit, op, codec.loads(await request.text()))
            return Response(codec.dumps(answer["r"]), headers={"content-type": "application/json"})
        return await app.serve(request, self.env)
