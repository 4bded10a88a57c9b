"""Awaiting a state transition shielded from cancellation, paying for the shield only when it waits.

A run's admission, claim and end must not be cut short half-way by a cancelled caller or a stopping
executor, so they run in a shielded anyio cancel scope. A scope costs a few microseconds to enter and
leave, and the memory store's operations never suspend, so nothing could cancel them anyway:
:func:`shielded` runs the coroutine until it first suspends and enters the shield only then, before
the first point where a cancellation could be delivered.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """``await coro`` inside ``anyio.CancelScope(shield=True)``, the scope entered only if it suspends."""
    try:
        signal = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    with anyio.CancelScope(shield=True):
        return await _Resumed(coro, signal)


class _Resumed:
    """Awaits a coroutine that already ran up to its first suspension (which yielded ``signal``)."""

    __slots__ = ("_coro", "_signal")

    def __init__(self, coro: Coroutine[Any, Any, Any], signal: Any) -> None:
        self._coro = coro
        self._signal = signal

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, signal = self._coro, self._signal
        while True:
            try:
                value = yield signal
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation or error thrown in by the task
                try:
                    signal = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    signal = coro.send(value)
                except StopIteration as done:
                    return done.value
