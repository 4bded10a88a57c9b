"""``serve(app)``: uvicorn on a local socket for the length of a block, and nothing left open after it."""

from __future__ import annotations

import os
import socket

import pytest
from starlette.applications import Starlette

from flue_core.http import serve

pytestmark = pytest.mark.anyio


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_port_already_in_use_fails_without_leaking_the_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = open_descriptors()
        with pytest.raises(OSError) as failure:
            async with serve(Starlette(), port=port):
                pass
        # Counted while the traceback (whose frames would hold a leaked socket) is still alive.
        assert open_descriptors() == before
        del failure
