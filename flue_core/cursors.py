"""List cursors: opaque to users, strict when decoded (a bad cursor is an error, never page one)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from flue_core.errors import InvalidCursor
from flue_core.models import RunRecord, format_timestamp, parse_timestamp


def encode_cursor(record: RunRecord) -> str:
    raw = json.dumps([format_timestamp(record.created_at), record.run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, run_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(run_id, str) or not created.endswith("Z"):
            raise ValueError(cursor)
        return parse_timestamp(created), run_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursor(
            "The cursor is not one runs.list returned; start from the first page with cursor=None.",
            details={"cursor": cursor},
        ) from None
