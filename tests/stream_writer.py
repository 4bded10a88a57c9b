"""Another process writing to a Redis stream store, for tests of cross-process wake-ups.

Usage: python stream_writer.py REDIS_URL PATH. Prints ``ready`` once its store is open; then each line
read from stdin is appended to PATH as a text record, and the process prints the CLOCK_MONOTONIC time
(shared by every process of the host) at which it sent the append. EOF closes the store and exits.
"""

from __future__ import annotations

import sys
import time

import anyio

from flue_core.streams.store import Append
from flue_node_like.streams_redis import RedisStreamStore


async def main(url: str, path: str) -> None:
    store = RedisStreamStore(url)
    await store.open(lambda paths: None)
    try:
        print("ready", flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            sent = time.monotonic()
            await store.append(path, Append(line.encode(), content_type="text/plain"))
            print(sent, flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
