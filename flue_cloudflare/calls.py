"""How code in a Worker reaches the Durable Objects of the target: their bindings, the one RPC method
each object answers (``op(name, json)``), and which object is handling the current event.

Every object class exposes a single RPC method, ``op``, taking an operation name and a JSON text and
answering a JSON text: ``{"r": result, "c": [changed...], "s": seq}``, or ``{"e": error}`` for a
:class:`~flue_core.errors.FlueError` raised inside, which :func:`call` raises again with its class.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from flue_cloudflare import codec

#: The bindings of the target's Durable Object namespaces (see ``wrangler.toml``).
RUNS = "FLUE_RUNS"
INDEX = "FLUE_INDEX"
SCHEDULES = "FLUE_SCHEDULES"
LIMITS = "FLUE_LIMITS"
STREAMS = "FLUE_STREAMS"
#: The names of the singleton objects.
INDEX_NAME = "index"
SCHEDULES_NAME = "schedules"
STREAMS_NAME = "streams"


def slot_object(workflow: str, concurrency_key: str | None) -> str:
    """The name of the limit object that hands out the concurrency slots of ``workflow``'s runs with
    ``concurrency_key``: the workflow's name for runs without a key, else ``<workflow>:<key>`` with
    the key percent-encoded (workflow names have no ``:``, and object names no ``/``)."""
    return workflow if concurrency_key is None else f"{workflow}:{quote(concurrency_key, safe='')}"


def rate_object(workflow: str, rate_key: str | None) -> str:
    """The name of the limit object that keeps the recent starts of ``workflow``'s runs with
    ``rate_key`` (``<workflow>;rate``, then ``:<key>`` percent-encoded)."""
    name = f"{workflow};rate"
    return name if rate_key is None else f"{name}:{quote(rate_key, safe='')}"


def scoped(scope: str, name: str) -> str:
    """The name of object ``name`` in ``scope``: ``<scope>/<name>``, or ``name`` in the default scope.
    Scopes let independent stores share one Worker's namespaces (tests use one each); run ids,
    workflow names and scopes never contain ``/``, so the name is read back unambiguously."""
    return f"{scope}/{name}" if scope else name


def unscoped(name: str) -> tuple[str, str]:
    """``(scope, name)`` of an object's full name."""
    scope, _, base = name.rpartition("/")
    return scope, base


_handling: contextvars.ContextVar[Any] = contextvars.ContextVar("flue_cloudflare_object", default=None)


def handling() -> Any:
    """The Durable Object whose event (request, RPC call, alarm) the current task serves, or ``None``
    in a Worker's own handlers. Tasks started while it serves one inherit it."""
    return _handling.get()


@contextmanager
def serving(obj: Any) -> Iterator[None]:
    token = _handling.set(obj)
    try:
        yield
    finally:
        _handling.reset(token)


def stub(env: Any, binding: str, name: str) -> Any:
    """The stub of the object called ``name`` in the namespace bound as ``binding``. Stubs belong to
    the event that made them, so one is made per call. The namespace's JavaScript object is used
    directly: calls carry only strings, which need none of the Workers SDK's conversions."""
    namespace = getattr(env, binding)
    namespace = getattr(namespace, "_binding", namespace)
    return namespace.get(namespace.idFromName(name))


async def call(target: Any, op: str, payload: Any) -> dict[str, Any]:
    """Perform ``op`` on an object (a stub, or the object itself when it is the one serving this
    event) and return its answer; a :class:`FlueError` it raised is raised here."""
    answer: dict[str, Any] = codec.loads(await target.op(op, codec.dumps(payload)))
    if "e" in answer:
        codec.raise_error(answer["e"])
    return answer
