"""Every limit Flue enforces, in one place; ``docs/limits.md`` states them for users.

Each limit is checked where a value enters (admission, ``ctx.emit``/``log``/``step``, HTTP requests,
list queries), before anything is stored and before any recursion could overflow, and a value past
one is refused with a typed error. Nothing is ever truncated or changed to fit.
"""

from __future__ import annotations

#: Most levels of nested lists and objects in a JSON value (input, step result, result, event data).
#: ``{"a": [1]}`` has two levels; a scalar has none. Pydantic stops at about 255 and Python's own
#: recursion limit at about 1000, so values within this limit can be validated, copied and encoded.
MAX_DEPTH = 100

#: Most decimal digits of an integer in a JSON value (Python's default int/str conversion limit,
#: ``sys.get_int_max_str_digits()``; a host that lowers it lowers this too).
MAX_INT_DIGITS = 4300

#: Most bytes of one event's data as UTF-8 JSON text (``ctx.emit``, ``ctx.log``, ``ctx.progress``).
MAX_EVENT_SIZE = 1024 * 1024

#: Most characters of an idempotency key.
MAX_KEY_LENGTH = 256

#: Most runs one page of ``runs.list`` / ``GET /runs`` returns.
MAX_LIST_LIMIT = 1000

#: Default ``max_body_size`` of the HTTP app, in bytes (``create_app(max_body_size=...)`` changes it).
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
