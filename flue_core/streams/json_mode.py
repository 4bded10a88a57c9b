"""JSON mode (protocol §9.1): validating appended JSON and keeping message boundaries.

A JSON record is stored as its messages' own text joined by commas — ``{"a":1},{"b":2}`` — so a read
wraps records in ``[`` ``]`` without re-encoding anything, and a fork can cut a record between messages.
"""

from __future__ import annotations

from flue_core.errors import InvalidStreamRequest
from flue_core.snapshot import STRICT_DECODER, loads

_WHITESPACE = " \t\n\r"  # JSON's insignificant whitespace; nothing else may be skipped


def record_of(body: bytes, *, creating: bool) -> bytes | None:
    """The record an append of ``body`` stores: its messages (:func:`messages_in`) joined by commas,
    or ``None`` for an empty array at creation."""
    messages = messages_in(body, creating=creating)
    return b",".join(messages) if messages else None


def messages_in(body: bytes, *, creating: bool) -> list[bytes]:
    """The messages an append of ``body`` stores, each as its own JSON text: a top-level array is
    flattened one level into its elements, any other value is one message. An empty array gives none
    when ``creating`` and is refused on append; invalid JSON, non-UTF-8 text and ``NaN``/``Infinity``
    are refused."""
    try:
        text = body.decode("utf-8")
        value = loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidStreamRequest(f"The body is not valid JSON: {exc}", details={"reason": str(exc)}) from None
    if not isinstance(value, list):
        return [text.strip(_WHITESPACE).encode("utf-8")]
    if not value and not creating:
        raise InvalidStreamRequest(
            "An empty JSON array appends nothing; send at least one message.", details={"reason": "empty array"}
        )
    return [item.encode("utf-8") for item in _elements(text)]


def messages_of(record: bytes) -> list[bytes]:
    """The messages of a stored record, each as its own JSON text."""
    return [item.encode("utf-8") for item in _elements("[" + record.decode("utf-8") + "]")]


def _elements(array: str) -> list[str]:
    """The text of each element of the (valid) JSON array ``array``, as written."""
    items: list[str] = []
    position = _skip(array, array.index("[") + 1)
    if array[position] == "]":
        return items
    while True:
        _, end = STRICT_DECODER.raw_decode(array, position)
        items.append(array[position:end])
        position = _skip(array, end)
        if array[position] == "]":
            return items
        position = _skip(array, position + 1)  # past the comma


def _skip(text: str, position: int) -> int:
    while text[position] in _WHITESPACE:
        position += 1
    return position
