"""Errors of the Cloudflare target, in the one tree of :mod:`flue_core.errors`."""

from __future__ import annotations

from flue_core.errors import FlueError

#: The largest string, BLOB or row a Durable Object's SQLite storage takes (Cloudflare's limit: 2 MB).
MAX_VALUE_BYTES = 2_000_000


class ValueTooLarge(FlueError):
    """A value is larger than a Durable Object can store in one row (:data:`MAX_VALUE_BYTES`): a run's
    input with its result, a step result, a signal's data, a stream append. Nothing was written."""

    code = "value_too_large"
    status = 413
