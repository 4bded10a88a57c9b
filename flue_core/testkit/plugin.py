"""The test environment's plugin: run ids that carry virtual time, and what the environment learns of
executions (which run a task belongs to, and that something happened)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from ulid import ULID

from flue_core.hookspecs import hookimpl
from flue_core.testkit.clock import EPOCH, VirtualClock, current_run

if TYPE_CHECKING:
    from flue_core.models import RunRecord

_RANDOM_BITS = 80


class EnvironmentPlugin:
    """Registered on the environment's runtime (before the defaults, so its run ids win)."""

    def __init__(self, clock: VirtualClock, on_activity: Callable[[], None]) -> None:
        self._clock = clock
        self._on_activity = on_activity
        self._last = (-1, 0)
        #: Runs admitted here that may not have ended (the environment drops those that did).
        self.live: set[str] = set()

    @hookimpl
    def flue_generate_run_id(self, workflow: str) -> str:
        """``run_<ULID>`` whose time is the virtual clock's, so a run's ``created_at`` (read from its id)
        is virtual too; monotonic within a millisecond, as the default generator is."""
        ms = (self._clock.now() - EPOCH) // timedelta(milliseconds=1)
        last_ms, last_random = self._last
        if ms == last_ms and last_random + 1 < 2**_RANDOM_BITS:
            random = last_random + 1
        else:
            random = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big") >> 1  # room to count up
        self._last = (ms, random)
        return f"run_{ULID.from_bytes(ms.to_bytes(6, 'big') + random.to_bytes(_RANDOM_BITS // 8, 'big'))}"

    @hookimpl
    def flue_execution_scope(self, run: RunRecord, resumed: bool) -> object:
        return self._executing(run.run_id)

    @contextmanager
    def _executing(self, run_id: str) -> Iterator[None]:
        token = current_run.set(run_id)
        try:
            yield
        finally:
            current_run.reset(token)
            self._on_activity()

    @hookimpl
    def flue_run_admitted(self, run: RunRecord) -> None:
        self.live.add(run.run_id)
        self._on_activity()

    @hookimpl
    def flue_run_waiting(self, run: RunRecord) -> None:
        self._on_activity()

    @hookimpl
    def flue_run_finished(self, run: RunRecord) -> None:
        self.live.discard(run.run_id)
        self._on_activity()
