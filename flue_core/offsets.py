"""Stream offsets: opaque strings that sort lexicographically in stream order.

The event at index ``n`` has offset ``0000000000000000_<n as 16 digits>``. Reading *from* an offset
returns what comes strictly after it. ``"-1"`` is before the first event; ``"now"`` is the current tail.
"""

from __future__ import annotations

import re

from flue_core.errors import InvalidOffset

START = "-1"
NOW = "now"
_OFFSET = re.compile(r"([0-9]{1,16})_([0-9]{1,16})")


def format_offset(index: int) -> str:
    return f"{0:016d}_{index:016d}"


def parse_offset(offset: str) -> int | None:
    """The index an offset names, ``-1`` for the start, ``None`` for ``"now"``."""
    if offset == START:
        return -1
    if offset == NOW:
        return None
    match = _OFFSET.fullmatch(offset) if isinstance(offset, str) else None
    if match is None:
        raise InvalidOffset(
            f"Invalid offset {offset!r}: use '-1', 'now' or an offset taken from the stream.",
            details={"offset": offset},
        )
    return int(match.group(2))
