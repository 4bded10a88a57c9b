"""Awaiting a state transition shielded from cancellation.

A run's admission, claim and end must not be cut short half-way by a cancelled caller or a stopping
executor, so they run in a shielded anyio cancel scope: a cancellation is seen at the caller's next
unshielded await instead.

The scope is entered before the operation starts, always. Running the operation up to its first
suspension outside the scope (to save the scope when it never suspends) breaks any store whose
operation enters a cancel scope of its own before suspending, an HTTP client's timeout say: the
scopes would be left in the wrong order.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """``await coro`` inside ``anyio.CancelScope(shield=True)``."""
    with anyio.CancelScope(shield=True):
        return await coro
