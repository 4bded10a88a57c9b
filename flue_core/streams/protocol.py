"""The Durable Streams wire vocabulary: header names, the text form of offsets, content-type rules.

Offsets are positions in a stream, written ``0000000000000000_<position as 16 digits>`` (see
:mod:`flue_core.offsets`); they sort lexicographically in stream order. A read *after* an offset returns
what comes strictly after that position.
"""

from __future__ import annotations

from flue_core.offsets import START, format_offset

STREAM_NEXT_OFFSET = "Stream-Next-Offset"
STREAM_UP_TO_DATE = "Stream-Up-To-Date"
STREAM_CLOSED = "Stream-Closed"
STREAM_CURSOR = "Stream-Cursor"
STREAM_TTL = "Stream-TTL"
STREAM_EXPIRES_AT = "Stream-Expires-At"
STREAM_SEQ = "Stream-Seq"
STREAM_FORKED_FROM = "Stream-Forked-From"
STREAM_FORK_OFFSET = "Stream-Fork-Offset"
STREAM_FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
STREAM_SSE_DATA_ENCODING = "Stream-SSE-Data-Encoding"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"

#: On every stream response (protocol §12.7): no MIME sniffing, readable cross-origin by ``fetch``.
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "cross-origin-resource-policy": "cross-origin"}

DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON = "application/json"


def offset_text(position: int) -> str:
    """The offset of ``position``. Only a stream without any message has a position before the first
    (``-1``); run streams never do (admission stores the first event), general streams start at 0."""
    return START if position < 0 else format_offset(position)


def media_type(content_type: str) -> str:
    """``"Application/JSON; charset=utf-8"`` → ``"application/json"``: what content types are compared by."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    """JSON mode (§9.1): messages keep their boundaries and reads return a JSON array."""
    return media_type(content_type) == JSON


def is_text(content_type: str) -> bool:
    """Whether SSE carries the stream's data as text; anything else is sent base64-encoded (§5.8)."""
    kind = media_type(content_type)
    return kind.startswith("text/") or kind == JSON


def chunk_body(content_type: str, messages: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The bytes of a read: JSON streams as one array of all messages (§9.1.5), others concatenated."""
    if is_json(content_type):
        return b"[" + b",".join(messages) + b"]"
    return b"".join(messages)
