"""``Stream-Cursor`` values (protocol §10.1): the number of 20-second intervals since 2024-10-09 UTC.

Live responses carry one so that CDNs collapse waiting clients without serving a cached empty answer
forever: a client echoes it back, and the server never answers with a cursor that is not greater than
the one it was sent.
"""

from __future__ import annotations

import math
import random
import time

EPOCH = 1728432000.0  # 2024-10-09T00:00:00Z
INTERVAL = 20
MAX_JITTER = 3600


def next_cursor(client_cursor: str | None, *, now: float | None = None) -> str:
    """The current interval, or — when the client's cursor is already there — its cursor advanced by
    1 to 3600 seconds' worth of intervals, so cursors only ever grow."""
    current = int(((time.time() if now is None else now) - EPOCH) // INTERVAL)
    if client_cursor is None or int(client_cursor) < current:
        return str(current)
    return str(int(client_cursor) + max(1, math.ceil(random.randint(1, MAX_JITTER) / INTERVAL)))
