"""flue_core.shielding: a state transition finishes whatever cancels its caller, whatever cancel scopes it enters itself."""

from __future__ import annotations

import anyio
import pytest

from flue_core.shielding import shielded

pytestmark = pytest.mark.anyio


async def test_a_coroutine_that_never_waits_returns_its_value() -> None:
    async def immediate() -> int:
        return 7

    assert await shielded(immediate()) == 7


async def test_a_waiting_coroutine_finishes_though_its_caller_is_cancelled() -> None:
    finished = []

    async def slow() -> str:
        await anyio.sleep(0.05)
        finished.append(True)
        return "done"

    with anyio.CancelScope() as scope:
        scope.cancel()
        result = await shielded(slow())
        await anyio.lowlevel.checkpoint()  # the cancellation is seen at the next unshielded await
        pytest.fail("the cancellation was not delivered after the shielded call")
    assert finished == [True] and result == "done" and scope.cancelled_caught


async def test_an_error_inside_reaches_the_caller() -> None:
    async def failing() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await shielded(failing())


async def test_an_error_before_the_first_wait_reaches_the_caller() -> None:
    async def failing() -> None:
        raise KeyError("early")

    with pytest.raises(KeyError):
        await shielded(failing())


async def test_an_operation_that_enters_cancel_scopes_of_its_own_before_waiting_finishes_in_order() -> None:
    """As an HTTP client's timeout does (the store of the Cloudflare target's tests, say)."""
    lock = anyio.Lock()

    async def with_scopes() -> str:
        with anyio.fail_after(5):
            async with lock:
                await anyio.sleep(0.01)
        return "done"

    with anyio.CancelScope() as scope:
        scope.cancel()
        assert await shielded(with_scopes()) == "done"
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught and not lock.locked()
    assert await shielded(with_scopes()) == "done"  # the lock is free: nothing was left held
