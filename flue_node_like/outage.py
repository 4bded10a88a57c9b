"""Logging a store outage as it is lived: once when it begins, once when it ends."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("flue")


class Outage:
    """Logs a store outage once when it begins and once when it ends, not a traceback per call."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since: float | None = None

    def failed(self, exc: Exception) -> None:
        if self._since is None:
            self._since = time.monotonic()
            log.warning(
                "flue: the store is unavailable (%s); runs executing here pause and resume by replay once it answers", exc
            )

    def over(self) -> None:
        if self._since is not None:
            log.warning("flue: the store answers again after %.1f s; runs cut short are resumed", time.monotonic() - self._since)
            self._since = None
