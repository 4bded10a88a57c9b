"""A Worker whose Durable Objects are the store of processes on the host: ``POST
/store/<scope>/<operation>`` performs one RunStore operation (flue_cloudflare.testing) on the objects
of that scope (one per test), and the objects execute nothing.
Everything else is Flue's HTTP surface (with no workflows)."""

from urllib.parse import urlsplit

from workers import Response

from flue_cloudflare import FlueApp, FlueWorker
from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes
from flue_cloudflare.testing import perform

app = FlueApp([], execute=False)
PREFIX = "/store/"


class Default(FlueWorker):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path.startswith(PREFIX) and request.method == "POST":
            scope, _, op = path[len(PREFIX) :].partition("/")
            answer = await perform(op, await request.text(), self.env, scope)
            return Response(answer, headers={"content-type": "application/json"})
        return await app.serve(request, self.env)
