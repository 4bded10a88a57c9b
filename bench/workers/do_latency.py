"""The Worker of ``bench/workerd_foundation.py``: requests that reach a SQLite-backed Durable Object
by fetch or by RPC, with and without a write, and one that reaches no object.

Routes: ``GET /noop``; ``GET /fetch/{name}/read``, ``POST /fetch/{name}/write`` (the object's
``fetch``); ``GET /rpc/{name}/read``, ``POST /rpc/{name}/write`` (its methods over RPC).
"""

from urllib.parse import urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS writes (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")

    def write(self, body):
        return self.sql.exec("INSERT INTO writes (body) VALUES (?) RETURNING seq", body).one()["seq"]

    def read(self):
        return self.sql.exec("SELECT count(*) AS n FROM writes").one()["n"]

    async def fetch(self, request):
        if request.method == "POST":
            return Response(str(self.write(await request.text())))
        return Response(str(self.read()))


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlparse(request.url).path.strip("/").split("/")
        if parts == ["noop"]:
            return Response("ok")
        if len(parts) != 3 or parts[0] not in ("fetch", "rpc") or parts[2] not in ("read", "write"):
            return Response("no such route", status=404)
        namespace = self.env.COUNTER
        stub = namespace.get(namespace.idFromName(parts[1]))
        if parts[0] == "fetch":
            body = await request.text() if parts[2] == "write" else None
            answer = await stub.fetch("https://counter/", method="POST" if body is not None else "GET", body=body)
            return Response(await answer.text())
        if parts[2] == "write":
            return Response(str(await stub.write(await request.text())))
        return Response(str(await stub.read()))
