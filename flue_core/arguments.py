"""Strict parsing of what callers ask for: query parameters, cursors, run ids and waits.

One function per kind, used by the Python API (``runs.*``) and the HTTP surface alike, so a value
means the same thing on both and anything not fully understood is a typed error — never a 500, never
silently read as something else. Integers are ASCII decimal digits of bounded length (so parsing
them costs nothing and cannot hit Python's int/str conversion limit).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from flue_core.errors import InvalidQuery
from flue_core.models import RunStatus

#: Run ids, as ``flue_generate_run_id`` must make them: no other string can name a run.
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Workflow names, as ``@workflow`` allows them; schedule names follow the same rule.
WORKFLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Custom event types (``ctx.emit``) and signal names: a letter, then up to 63 of ``[A-Za-z0-9_.:-]``.
EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})")


def decimal(text: str, max_digits: int = 20) -> int | None:
    """``text`` as an integer if it is an optional ``-`` and 1 to ``max_digits`` ASCII digits, else
    ``None`` (``"--5"``, ``"+5"``, ``" 5"``, ``"5\\n"``, ``"٣"``, ``"1e3"`` and longer numbers)."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text) or len(text.lstrip("-")) > max_digits:
        return None
    return int(text)


def integer(name: str, value: Any, *, minimum: int, maximum: int) -> int:
    """The integer ``value`` (an ``int``, or a query string's text of one) from ``minimum`` to
    ``maximum``; otherwise :class:`InvalidQuery` naming the parameter."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else decimal(value)
    if number is None:
        raise InvalidQuery(
            f"{name} must be an integer from {minimum} to {maximum}, not {_shown(value)}.",
            details={"parameter": name, "value": _shown(value)},
        )
    if not minimum <= number <= maximum:
        raise InvalidQuery(
            f"{name} must be an integer from {minimum} to {maximum}, not {_shown(number)}.",
            details={"parameter": name, "value": _shown(value), "minimum": minimum, "maximum": maximum},
        )
    return number


def seconds(name: str, value: Any) -> float | None:
    """A wait in seconds: ``None`` (no limit) or a finite number >= 0; otherwise :class:`InvalidQuery`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidQuery(
            f"{name} must be a finite number of seconds >= 0 (or None), not {_shown(value)}.",
            details={"parameter": name, "value": _shown(value)},
        )
    return float(value)


def seconds_text(name: str, text: str) -> float:
    """A query string's number of seconds: ASCII digits with up to six decimals (``"600"``, ``"1.5"``)."""
    if not isinstance(text, str) or not _SECONDS.fullmatch(text):
        raise InvalidQuery(
            f"{name} must be a number of seconds such as 600 or 1.5, not {_shown(text)}.",
            details={"parameter": name, "value": _shown(text)},
        )
    return float(text)


def timestamp_text(name: str, text: str) -> datetime:
    """A query string's moment: RFC 3339 with its offset (``2026-12-24T09:00:00Z``, ``...+01:00``)."""
    try:
        if not isinstance(text, str) or not _TIMESTAMP.fullmatch(text):
            raise ValueError(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(
            f"{name} must be a time with its offset, such as 2026-12-24T09:00:00Z, not {_shown(text)}.",
            details={"parameter": name, "value": _shown(text)},
        ) from None


def status(value: Any) -> RunStatus | None:
    """A run status filter: ``None`` or one of :class:`RunStatus`' values."""
    if value is None:
        return None
    try:
        return RunStatus(value)
    except (ValueError, TypeError):
        raise InvalidQuery(
            f"Unknown status {_shown(value)}; use one of {', '.join(s.value for s in RunStatus)}.",
            details={"parameter": "status", "value": _shown(value)},
        ) from None


def workflow_name(value: Any) -> str | None:
    """A workflow filter: ``None`` or a string that can be a workflow's name."""
    if value is None:
        return None
    if not isinstance(value, str) or not WORKFLOW_NAME.fullmatch(value):
        raise InvalidQuery(
            f"workflow must be a workflow name (1-128 of letters, digits, '.', '_', '-'), not {_shown(value)}.",
            details={"parameter": "workflow", "value": _shown(value)},
        )
    return value


def run_id_filter(name: str, value: Any) -> str | None:
    """A filter naming a run (``parent=``): ``None`` or a string that can be a run id."""
    if value is None:
        return None
    if not is_run_id(value):
        raise InvalidQuery(
            f"{name} must be a run id (1-128 of letters, digits, '_', '-'), not {_shown(value)}.",
            details={"parameter": name, "value": _shown(value)},
        )
    return value


def is_run_id(value: Any) -> bool:
    """Whether ``value`` can name a run at all (a string of 1-128 of ``[A-Za-z0-9_-]``)."""
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


def _shown(value: Any) -> str:
    """``value`` for an error message and envelope: escaped (so always valid text) and short."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a very large integer"
    shown = ascii(value) if not isinstance(value, (int, float)) or isinstance(value, bool) else repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
