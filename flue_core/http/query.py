"""Strict query strings (an unknown or repeated parameter is an error, never silently ignored) and
the one header that is an argument too, ``Idempotency-Key``."""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request

from flue_core.errors import InvalidKey, InvalidQuery


def parse_query(request: Request, allowed: Collection[str]) -> dict[str, str]:
    """The query parameters as a dict; raises :class:`InvalidQuery` for unknown or repeated names."""
    if not request.scope.get("query_string"):
        return {}  # the common case, without parsing anything
    items = request.query_params.multi_items()
    unknown = sorted({name for name, _ in items if name not in allowed})
    if unknown:
        raise InvalidQuery(
            f"Unknown query parameter(s): {', '.join(unknown)}; this endpoint takes {', '.join(sorted(allowed)) or 'none'}.",
            details={"unknown": unknown, "allowed": sorted(allowed)},
        )
    params: dict[str, str] = {}
    for name, value in items:
        if name in params:
            raise InvalidQuery(f"Query parameter {name!r} is given more than once.", details={"parameter": name})
        params[name] = value
    return params


def choice(params: dict[str, str], name: str, allowed: Collection[str]) -> str | None:
    """``params[name]`` if it is one of ``allowed``, ``None`` when absent; otherwise :class:`InvalidQuery`."""
    value = params.get(name)
    if value is not None and value not in allowed:
        raise InvalidQuery(
            f"Query parameter {name}={value!r} is not allowed; use {' or '.join(f'{name}={a}' for a in allowed)}.",
            details={"parameter": name, "value": value, "allowed": sorted(allowed)},
        )
    return value


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header as text, or ``None``. Header bytes are read as UTF-8 — what
    :class:`~flue_core.client.FlueClient` and ``curl`` send — so a key means the same over HTTP as
    from Python; bytes that are not UTF-8 are :class:`InvalidKey`."""
    raw = [value for name, value in request.scope["headers"] if name == b"idempotency-key"]
    if not raw:
        return None
    if len(raw) > 1:
        raise InvalidKey("Send one Idempotency-Key header, not several.", details={"count": len(raw)})
    try:
        return raw[0].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey("The Idempotency-Key header is not UTF-8 text.") from None
