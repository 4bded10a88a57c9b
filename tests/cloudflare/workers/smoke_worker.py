"""The smoke-test Worker: a SQLite-backed Durable Object with an alarm, a cron-triggered
``scheduled()``, and routes that import and drive flue_core, pydantic and Starlette inside workerd.

Routes (all JSON): ``GET /`` (ready), ``POST|GET /objects/{name}/entries``, ``POST|GET
/objects/{name}/alarm`` (``?in=<ms>``), ``GET /scheduled`` (what cron triggers recorded),
``POST /queue`` (send the body to the queue ``jobs``), ``GET /queue`` (what ``queue()`` received),
``POST /rpc/{name}/entries`` (the same write through an RPC call of ``Ledger.append``), ``GET /noop``
(no object), ``GET /python`` (the interpreter's and Pyodide's versions), ``GET /probe/flue``,
``ANY /probe/asgi/...``, ``ANY /probe/http/...``.
"""

import json
import time
from urllib.parse import parse_qs, urlparse

from workers import DurableObject, Response, WorkerEntrypoint

CRON_LOG = "cron-log"
QUEUE_LOG = "queue-log"


def reply(body, status=200):
    return Response(json.dumps(body), status=status, headers={"content-type": "application/json"})


class Ledger(DurableObject):
    """An append-only ledger in the object's own SQLite database; its alarm appends an entry."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS entries ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL)"
        )

    def append(self, kind, body):
        """Append one entry (also callable over RPC: ``await stub.append(kind, body)``)."""
        row = self.sql.exec(
            "INSERT INTO entries (kind, body, at) VALUES (?, ?, ?) RETURNING seq", kind, body, int(time.time() * 1000)
        ).one()
        return row["seq"]

    async def fetch(self, request):
        url = urlparse(request.url)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path == "/entries" and request.method == "POST":
            return reply({"seq": self.append(query.get("kind", "entry"), await request.text())})
        if url.path == "/entries":
            return reply(
                {"entries": list(self.sql.exec("SELECT seq, kind, body, at FROM entries ORDER BY seq").toArray())}
            )
        if url.path == "/alarm" and request.method == "POST":
            at = int(time.time() * 1000) + int(query.get("in", "0"))
            await self.ctx.storage.setAlarm(at)
            return reply({"at": at})
        if url.path == "/alarm":
            return reply({"alarm": await self.ctx.storage.getAlarm()})
        return reply({"error": f"no route {request.method} {url.path}"}, 404)

    async def alarm(self, *args):
        self.append("alarm", "fired")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        parts = url.path.strip("/").split("/")
        if url.path == "/":
            return reply({"ok": True})
        if parts[0] == "rpc" and len(parts) == 3 and parts[2] == "entries" and request.method == "POST":
            namespace = self.env.LEDGER
            seq = await namespace.get(namespace.idFromName(parts[1])).append("entry", await request.text())
            return reply({"seq": seq})
        if url.path == "/noop":
            return reply({"ok": True})
        if url.path == "/python":
            import sys

            import pyodide

            return reply({"python": ".".join(map(str, sys.version_info[:3])), "pyodide": pyodide.__version__})
        if parts[0] == "objects" and len(parts) == 3:
            return await self.forward(parts[1], "/" + parts[2], request.method, url.query, await request.text())
        if url.path == "/scheduled":
            return await self.forward(CRON_LOG, "/entries", "GET", "", "")
        if url.path == "/queue" and request.method == "POST":
            await self.env.JOBS.send(await request.text())
            return reply({"sent": True}, 202)
        if url.path == "/queue":
            return await self.forward(QUEUE_LOG, "/entries", "GET", "", "")
        if url.path == "/probe/flue":
            import flue_probe

            return reply(await flue_probe.run_a_workflow())
        if parts[0] == "probe" and len(parts) > 1 and parts[1] in ("asgi", "http"):
            import flue_probe

            return await flue_probe.serve_asgi(parts[1], request, self.env)
        return reply({"error": f"no route {request.method} {url.path}"}, 404)

    async def forward(self, name, path, method, query, body):
        namespace = self.env.LEDGER
        object_id = namespace.idFromName(name)
        stub = namespace.get(object_id)
        target = f"https://ledger{path}" + (f"?{query}" if query else "")
        answer = await stub.fetch(target, method=method, body=body if method == "POST" else None)
        data = json.loads(await answer.text())
        data["object_id"] = object_id.toString()
        return reply(data, answer.status)

    # workerd passes (event, env, ctx) to scheduled() and queue(), as to a module Worker's handlers.
    async def scheduled(self, controller, env=None, ctx=None):
        record = {"cron": controller.cron, "scheduledTime": controller.scheduledTime}
        await self.forward(CRON_LOG, "/entries", "POST", "kind=cron", json.dumps(record))

    async def queue(self, batch, env=None, ctx=None):
        for message in batch.messages:
            record = {"queue": batch.queue, "body": message.body, "attempts": message.attempts}
            await self.forward(QUEUE_LOG, "/entries", "POST", "kind=message", json.dumps(record))
            message.ack()
