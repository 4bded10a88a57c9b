"""The metric instruments: admissions, run durations, failures and the depth of the queue.

Admissions and failures are counted in this process and reported when the meter provider collects
(observable counters: a sum of every admission since the plugin started, like a counter's), so that
counting one costs a dict update, not an SDK call. Run durations are recorded as they end. Queue
depth is read from the store, not tracked by hooks: runs are admitted, woken and executed by many
processes, and only the store knows how many wait. It is counted in the store (``RunStore.count_runs``,
which does not hold the event loop) at most every ``queue_interval`` seconds, when the meter provider
collects (a metrics reader's thread), through the runtime's event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from flue_core.models import RunRecord, RunStatus
from flue_core.otel.spans import ADMISSION_OUTCOME, ADMISSION_SOURCE, ERROR_CODE, RUN_STATUS, WORKFLOW

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

#: Statuses of runs that wait to execute: a delayed start, the ready pool, a durable wait or back-off.
PENDING = (RunStatus.SCHEDULED, RunStatus.QUEUED, RunStatus.WAITING)
#: Seconds, from a no-op run to one that sleeps for a day.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


class Instruments:
    """Flue's instruments on one meter."""

    def __init__(self, meter: metrics.Meter, queue: QueueDepth) -> None:
        self._admissions: dict[tuple[str, str, str], int] = {}  # (workflow, source, outcome) → count
        self._failures: dict[tuple[str, str], int] = {}  # (workflow, error code) → count
        self._duration_attributes: dict[tuple[str, str], dict[str, str]] = {}
        meter.create_observable_counter(
            "flue.admissions",
            callbacks=[self._observe_admissions],
            unit="{admission}",
            description="Admissions, by workflow, source and outcome.",
        )
        self.run_duration = meter.create_histogram(
            "flue.run.duration",
            unit="s",
            description="From a run's first execution to its end (waits included), by workflow and final status.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        meter.create_observable_counter(
            "flue.run.failures",
            callbacks=[self._observe_failures],
            unit="{run}",
            description="Runs that ended failed, by workflow and error code.",
        )
        meter.create_observable_gauge(
            "flue.queue.depth",
            callbacks=[queue.observe],
            unit="{run}",
            description="Runs waiting to execute (scheduled, queued, waiting), by workflow and status, as the store counts them.",
        )

    def admitted(self, workflow: str, source: str, outcome: str) -> None:
        key = (workflow, source, outcome)
        self._admissions[key] = self._admissions.get(key, 0) + 1

    def run_finished(self, run: RunRecord) -> None:
        duration = run.duration_ms
        if duration is not None:
            key = (run.workflow, run.status.value)
            attributes = self._duration_attributes.get(key)
            if attributes is None:
                attributes = self._duration_attributes[key] = {WORKFLOW: run.workflow, RUN_STATUS: run.status.value}
            self.run_duration.record(duration / 1000, attributes)
        if run.status == RunStatus.FAILED:
            key = (run.workflow, run.error.code if run.error is not None else "unknown")
            self._failures[key] = self._failures.get(key, 0) + 1

    # The callbacks run on a metrics reader's thread: list() copies each dict in one step.

    def _observe_admissions(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {WORKFLOW: workflow, ADMISSION_SOURCE: source, ADMISSION_OUTCOME: outcome})
            for (workflow, source, outcome), n in list(self._admissions.items())
        ]

    def _observe_failures(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {WORKFLOW: workflow, ERROR_CODE: code}) for (workflow, code), n in list(self._failures.items())]


class QueueDepth:
    """The pending runs of the runtime being served, counted in its store when collected.

    Collection happens on a metrics reader's thread: the count runs on the runtime's event loop
    (``runtime.call_sync``) and is kept for ``interval`` seconds. Counts stop at ``limit`` runs per
    status. When no count can be made (no runtime open, or a collection on the loop's own thread,
    which must not block), the last counts are reported again.
    """

    def __init__(self, interval: float, limit: int) -> None:
        self.interval = interval
        self.limit = limit
        self.runtime: Runtime | None = None
        self._counts: dict[tuple[str, RunStatus], int] = {}
        self._counted_at = -float("inf")

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        runtime = self.runtime
        if runtime is not None and time.monotonic() - self._counted_at >= self.interval:
            try:
                self._counts = runtime.call_sync(self.count, runtime)
                self._counted_at = time.monotonic()
            except Exception as exc:
                log.debug("flue: queue depth not counted now: %s", exc)
        return [Observation(n, {WORKFLOW: workflow, RUN_STATUS: status.value}) for (workflow, status), n in self._counts.items()]

    async def count(self, runtime: Runtime) -> dict[tuple[str, RunStatus], int]:
        """Pending runs per (workflow, status); every workflow of the runtime appears, with 0 if none wait."""
        counts = {(workflow.name, status): 0 for workflow in runtime.registry for status in PENDING}
        counts.update(await runtime.target.store.count_runs(runtime.registry.names, PENDING, self.limit))
        return counts
