"""A Durable Object's SQLite storage as the objects of this package use it: rows as dicts, ``None`` as
NULL both ways, and :meth:`Sql.transaction` for writes that must all happen or none.

It calls the storage's JavaScript API directly rather than through the Workers SDK's wrapper, which
converts every argument and result on the way (ten times slower: about 0.3 ms against 0.03 ms per
statement, measured in workerd). Writes a handler makes without awaiting in between are committed
together anyway (the object's output gate holds its answers until they are); a transaction adds
rollback when Python raises half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flue_cloudflare.errors import MAX_VALUE_BYTES, ValueTooLarge

T = TypeVar("T")

try:  # inside a Worker
    from pyodide.ffi import jsnull, to_js
except ImportError:  # pragma: no cover - only imported inside a Worker
    jsnull = None
    to_js = None

_BINARY = (bytes, bytearray, memoryview)


def _param(value: Any) -> Any:
    """A Python value as a statement parameter: ``None`` is NULL, bytes a BLOB (a ``Uint8Array``)."""
    if value is None:
        return jsnull
    if isinstance(value, _BINARY):
        return to_js(bytes(value))
    return value


def _column(value: Any) -> Any:
    """A column's value as Python: NULL is ``None``, a BLOB ``bytes``."""
    if value is jsnull:
        return None
    if isinstance(value, memoryview):
        return value.tobytes()
    if hasattr(value, "to_bytes"):  # an ArrayBuffer left as a JavaScript object
        return value.to_bytes()
    return value


def _size(params: tuple[Any, ...]) -> int:
    """Bytes of a statement's text and binary parameters (about what its row will hold)."""
    total = 0
    for value in params:
        if isinstance(value, str):
            total += len(value) if len(value) * 4 <= MAX_VALUE_BYTES or value.isascii() else len(value.encode())
        elif isinstance(value, _BINARY):
            total += len(value)
    return total


def _too_large() -> ValueTooLarge:
    return ValueTooLarge(
        f"A value is larger than a Durable Object can store ({MAX_VALUE_BYTES} bytes in one row).",
        details={"limit": MAX_VALUE_BYTES},
    )


class Sql:
    """``storage.sql`` of one object (``ctx.storage`` as the SDK hands it to a Durable Object)."""

    def __init__(self, storage: Any) -> None:
        raw = getattr(storage, "_binding", storage)  # the SDK's wrapper keeps the JavaScript object here
        self.storage = raw

    def _run(self, query: str, params: tuple[Any, ...]) -> Any:
        # Cloudflare refuses rows past 2 MB; a local workerd takes more. Refusing here makes both agree.
        if _size(params) > MAX_VALUE_BYTES:
            raise _too_large()
        try:
            return self.storage.sql.exec(query, *[_param(value) for value in params])
        except Exception as exc:
            if "SQLITE_TOOBIG" in str(exc):
                raise _too_large() from None
            raise

    def rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        rows = self._run(query, params).toArray().to_py()
        for row in rows:
            for name, value in row.items():
                if value is jsnull or not isinstance(value, (str, int, float)):
                    row[name] = _column(value)
        return rows

    def one(self, query: str, *params: Any) -> dict[str, Any] | None:
        found = self.rows(query, *params)
        return found[0] if found else None

    def value(self, query: str, *params: Any) -> Any:
        row = self.one(query, *params)
        return None if row is None else next(iter(row.values()))

    def run(self, query: str, *params: Any) -> None:
        self._run(query, params)

    def script(self, statements: str) -> None:
        """Several statements separated by ``;`` (a schema)."""
        self.storage.sql.exec(statements)

    def transaction(self, work: Callable[[], T]) -> T:
        """``work()`` in one storage transaction: if it raises, none of its writes are kept and the
        exception propagates."""
        result: list[T] = []

        def body() -> None:
            result.append(work())

        self.storage.transactionSync(body)
        return result[0]

    def has_table(self, name: str) -> bool:
        return self.one("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?", name) is not None

    def has_column(self, table: str, column: str) -> bool:
        return self.one("SELECT 1 AS found FROM pragma_table_info(?) WHERE name = ?", table, column) is not None
