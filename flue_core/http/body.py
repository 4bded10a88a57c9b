"""Reading a JSON request body: media type first, size enforced while reading, then strict JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from flue_core.http.errors import BodyTooLarge, InvalidJson, UnsupportedMediaType
from flue_core.errors import InputNotSerializable
from flue_core.snapshot import NotJSON, loads



def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` structured type, parameters (``; charset=...``) ignored."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request, max_size: int, what: str = "the input") -> Any:
    """The body as a JSON value, or ``None`` for an empty (or all-whitespace) body. ``what`` names
    the body in messages ("the input", "the signal's data"...).

    Raises :class:`UnsupportedMediaType` when a ``Content-Type`` other than JSON is sent, or a body
    comes without one; :class:`BodyTooLarge` as soon as the announced or the received size passes
    ``max_size`` (the rest is never read); :class:`InvalidJson` when the body is not UTF-8 JSON.
    """
    content_type = request.headers.get("content-type")
    encoding = request.headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() != "identity":
        raise UnsupportedMediaType(
            f"Send {what} uncompressed: Content-Encoding {encoding!r} is not supported.",
            details={"content_encoding": encoding},
        )
    if content_type is not None and not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"Send {what} as Content-Type: application/json, not {content_type!r}.",
            details={"content_type": content_type},
        )
    body = await read_limited(request, max_size)
    if not body.strip():
        return None
    if content_type is None:
        raise UnsupportedMediaType(
            "A request body needs Content-Type: application/json.", details={"content_type": None}
        )
    try:
        return loads(body.decode("utf-8"))
    except NotJSON as exc:  # nested past what can be parsed: past MAX_DEPTH too, like any deep input
        raise InputNotSerializable(
            f"{what[0].upper()}{what[1:]} is not JSON Flue can carry: {exc}", details={"path": exc.path, "reason": exc.reason}
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJson(f"The body is not valid JSON: {exc}", details={"reason": str(exc)}) from None


async def read_limited(request: Request, max_size: int) -> bytes:
    """The raw body, refused with :class:`BodyTooLarge` as soon as the announced or the received size
    passes ``max_size`` (the rest is never read)."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isascii() and announced.isdigit() and (len(announced) > 18 or int(announced) > max_size):
        raise _too_large(max_size)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_size:
            raise _too_large(max_size)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_size: int) -> BodyTooLarge:
    return BodyTooLarge(f"The body is larger than {max_size} bytes.", details={"max_body_size": max_size})

