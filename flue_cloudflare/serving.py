"""Answering a request to a Worker or a Durable Object with an ASGI app (Flue's HTTP surface).

A ``GET`` or ``HEAD`` may be answered with a streamed body (SSE, long-poll) that the app keeps writing
after the ``Response`` is returned: those go through the Workers SDK's adapter. Every other method is
answered in one piece, by :func:`serve_whole`: the body is read at once, the app runs in the calling
task and its answer becomes one ``Response``, with none of the adapter's queue, futures and task
between them (measured in workerd: ~0.7 ms against ~1.7 ms per ``POST``, on the path of every
admission).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit

#: Methods whose answer may be streamed: served by the SDK's adapter.
STREAMED = frozenset({"GET", "HEAD"})
#: Statuses whose response has no body (Fetch standard).
NULL_BODY = frozenset({101, 103, 204, 205, 304})
_ASGI = {"version": "3.0", "spec_version": "2.0"}


async def serve_asgi(app: Any, request: Any, env: Any) -> Any:
    """Answer ``request`` (the SDK's ``Request`` or a JavaScript one) with the ASGI ``app``. The ASGI
    lifespan cycle the SDK's ``asgi.fetch`` runs around every request is left out: our apps have
    none (the runtime is opened by :meth:`FlueApp.open`). A streamed answer keeps being written after
    this returns, for as long as the runtime lets the event run (``waitUntil``)."""
    if request.method not in STREAMED:
        return await serve_whole(app, getattr(request, "js_object", request), env)
    from workers import asgi, wait_until

    response, task = await asgi.process_request(app, request, env, None)
    if not task.done():
        wait_until(asgi.run_in_background(task))
    return response


async def serve_whole(app: Any, request: Any, env: Any) -> Any:
    """Answer the JavaScript ``request`` with ``app``, whose answer is sent whole once the app has
    returned. After the body, ``receive()`` waits until the answer is complete and then reports the
    client gone, as the SDK's adapter does (a Worker does not learn of a disconnect earlier)."""
    import js
    from pyodide.ffi import to_js

    body = (await request.arrayBuffer()).to_bytes() if request.body else b""
    url = urlsplit(request.url)
    scope = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": unquote(url.path),
        "raw_path": url.path.encode(),
        "query_string": url.query.encode(),
        "headers": [(name.lower().encode(), value.encode()) for name, value in request.headers],
        "env": env,
    }
    answered = asyncio.get_running_loop().create_future()
    unread = True
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal unread
        if unread:
            unread = False
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.shield(answered)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False) and not answered.done():
                answered.set_result(None)

    try:
        await app(scope, receive, send)
    finally:
        if not answered.done():
            answered.set_result(None)
    if "status" not in start:
        raise RuntimeError("The application did not generate a response")
    status = start["status"]
    headers = js.Headers.new(to_js([[name.decode(), value.decode()] for name, value in start.get("headers", [])]))
    content = None if status in NULL_BODY else to_js(b"".join(chunks))
    return js.Response.new(content, status=status, headers=headers)
