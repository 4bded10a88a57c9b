"""Turning ``PUT`` (create, fork) and ``POST`` (append, close) headers into store requests.

Every header is checked against its syntax in the protocol; a value out of it is a 400
:class:`~flue_core.errors.InvalidStreamRequest` naming the header, never a guess.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from starlette.datastructures import Headers

from flue_core.errors import InvalidOffset, InvalidStreamRequest
from flue_core.models import format_timestamp
from flue_core.offsets import parse_offset
from flue_core.streams.protocol import (
    PRODUCER_EPOCH,
    PRODUCER_ID,
    PRODUCER_SEQ,
    STREAM_CLOSED,
    STREAM_EXPIRES_AT,
    STREAM_FORK_OFFSET,
    STREAM_FORK_SUB_OFFSET,
    STREAM_FORKED_FROM,
    STREAM_SEQ,
    STREAM_TTL,
)
from flue_core.streams.store import Append, Fork, NewStream, Producer

_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")  # decimal, no sign, no leading zeros, no exponent, < 10^18
_DIGITS = re.compile(r"[0-9]{1,16}")  # 2^53-1 has 16 digits
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}\s*(;.*)?", re.DOTALL)
MAX_SAFE_INTEGER = 2**53 - 1  # producers' epochs and seqs stay exact in JavaScript clients


def new_stream(headers: Headers, body: bytes, mount: str = "") -> NewStream:
    """A ``PUT``: ``Content-Type``, ``Stream-TTL`` or ``Stream-Expires-At``, ``Stream-Closed`` and the
    fork headers. ``mount`` is the prefix the server is mounted at, which a ``Stream-Forked-From`` path
    may carry."""
    ttl_text, expires_text = headers.get(STREAM_TTL), headers.get(STREAM_EXPIRES_AT)
    if ttl_text is not None and expires_text is not None:
        raise InvalidStreamRequest(
            "Send Stream-TTL or Stream-Expires-At, not both.", details={"header": f"{STREAM_TTL}, {STREAM_EXPIRES_AT}"}
        )
    return NewStream(
        content_type=content_type(headers),
        ttl=None if ttl_text is None else _number(STREAM_TTL, ttl_text),
        expires_at=None if expires_text is None else _timestamp(expires_text),
        closed=closes(headers),
        data=body,
        fork=_fork(headers, mount),
    )


def append_request(headers: Headers, body: bytes) -> Append:
    """A ``POST``: ``Content-Type``, ``Stream-Seq``, ``Stream-Closed`` and the producer headers."""
    seq = headers.get(STREAM_SEQ)
    if seq is not None and not seq:
        raise InvalidStreamRequest("Stream-Seq is empty.", details={"header": STREAM_SEQ})
    return Append(data=body, content_type=content_type(headers), close=closes(headers), seq=seq, producer=_producer(headers))


def content_type(headers: Headers) -> str | None:
    value = headers.get("content-type", "").strip()
    if not value:
        return None
    if not _CONTENT_TYPE.fullmatch(value):
        raise InvalidStreamRequest(f"Content-Type {value!r} is not a media type.", details={"header": "Content-Type"})
    return value


def closes(headers: Headers) -> bool:
    """``Stream-Closed: true`` (any case); every other value counts as absent (§4.1)."""
    return headers.get(STREAM_CLOSED, "").lower() == "true"


def expiry_text(expires_at: float) -> str:
    """``Stream-Expires-At`` of a stream: RFC 3339, UTC, milliseconds."""
    return format_timestamp(datetime.fromtimestamp(expires_at, UTC))


def _fork(headers: Headers, mount: str) -> Fork | None:
    source = headers.get(STREAM_FORKED_FROM)
    offset, sub_offset = headers.get(STREAM_FORK_OFFSET), headers.get(STREAM_FORK_SUB_OFFSET)
    if source is None:
        for name, value in ((STREAM_FORK_OFFSET, offset), (STREAM_FORK_SUB_OFFSET, sub_offset)):
            if value is not None:
                raise InvalidStreamRequest(f"{name} needs {STREAM_FORKED_FROM}.", details={"header": name})
        return None
    if not source.strip():
        raise InvalidStreamRequest(f"{STREAM_FORKED_FROM} is empty.", details={"header": STREAM_FORKED_FROM})
    if mount and source.startswith(mount + "/"):
        source = source[len(mount) :]
    if not source.startswith("/"):
        source = "/" + source
    position = None
    if offset is not None:
        try:
            position = parse_offset(offset)
        except InvalidOffset:
            raise InvalidStreamRequest(
                f"{STREAM_FORK_OFFSET} {offset!r} is not an offset.", details={"header": STREAM_FORK_OFFSET}
            ) from None
        position = None if position is None else max(position, 0)
    return Fork(source, position, 0 if sub_offset is None else _number(STREAM_FORK_SUB_OFFSET, sub_offset))


def _producer(headers: Headers) -> Producer | None:
    values = [headers.get(name) for name in (PRODUCER_ID, PRODUCER_EPOCH, PRODUCER_SEQ)]
    if all(value is None for value in values):
        return None
    if any(value is None for value in values):
        raise InvalidStreamRequest(
            "Producer-Id, Producer-Epoch and Producer-Seq go together: send all three or none.",
            details={"header": f"{PRODUCER_ID}, {PRODUCER_EPOCH}, {PRODUCER_SEQ}"},
        )
    producer_id, epoch, seq = values
    assert producer_id is not None and epoch is not None and seq is not None
    if not producer_id:
        raise InvalidStreamRequest("Producer-Id is empty.", details={"header": PRODUCER_ID})
    return Producer(producer_id, _safe_integer(PRODUCER_EPOCH, epoch), _safe_integer(PRODUCER_SEQ, seq))


def _number(header: str, value: str) -> int:
    if not _NUMBER.fullmatch(value):
        raise InvalidStreamRequest(
            f"{header} must be a non-negative integer of at most 18 digits, without sign or leading zeros,"
            f" not {value!r}.",
            details={"header": header},
        )
    return int(value)


def _safe_integer(header: str, value: str) -> int:
    if not _DIGITS.fullmatch(value) or int(value) > MAX_SAFE_INTEGER:
        raise InvalidStreamRequest(
            f"{header} must be an integer from 0 to 2^53-1, not {value!r}.", details={"header": header}
        )
    return int(value)


def _timestamp(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidStreamRequest(
            f"Stream-Expires-At must be an RFC 3339 timestamp with a time zone, not {value!r}.",
            details={"header": STREAM_EXPIRES_AT},
        )
    return moment.timestamp()
