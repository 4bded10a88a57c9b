"""List cursors: opaque to users, strict when decoded (a bad cursor is an error, never page one).

A cursor is the URL-safe base64 (unpadded) of the compact JSON ``["<created_at>", "<run_id>"]`` of
the last run of a page. Decoding accepts exactly what :func:`encode_cursor` makes — canonical
base64, that JSON shape, a canonical timestamp and a well-formed run id — and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime

from flue_core.arguments import is_run_id
from flue_core.errors import InvalidCursor
from flue_core.models import RunRecord, format_timestamp, parse_timestamp

#: Longer than any cursor encode_cursor makes (a 24-character timestamp and a 128-character id).
MAX_CURSOR_LENGTH = 256
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def encode_cursor(record: RunRecord) -> str:
    return _encode(format_timestamp(record.created_at), record.run_id)


def _encode(created: str, run_id: str) -> str:
    raw = json.dumps([created, run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[datetime, str]:
    """The position a cursor names, or :class:`InvalidCursor` for anything it did not make."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor):
        raise _invalid(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed = json.loads(raw.decode("utf-8"))
        created, run_id = parsed
        if not isinstance(created, str) or not is_run_id(run_id):
            raise ValueError(cursor)
        moment = parse_timestamp(created)
        if moment.tzinfo is None or _encode(format_timestamp(moment), run_id) != cursor:
            raise ValueError(cursor)  # not the one form encode_cursor writes
        return moment, run_id
    except (binascii.Error, ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _invalid(cursor) from None


def _invalid(cursor: object) -> InvalidCursor:
    printable = isinstance(cursor, str) and cursor.isascii() and cursor.isprintable()
    shown = cursor if printable else ascii(cursor)  # type: ignore[assignment]
    return InvalidCursor(
        "The cursor is not one runs.list returned; start again from the first page, without a cursor.",
        details={"cursor": shown if len(shown) <= 300 else shown[:297] + "..."},
    )
