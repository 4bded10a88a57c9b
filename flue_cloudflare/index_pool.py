"""The index object's ready pool as workers take it: highest priority first, then oldest, with each
workflow's :class:`~flue_core.flow.limits.Limits` applied per concurrency and rate key.

The buckets a limit holds (a workflow's runs with one key value) are counted first, from the few
runs held or started recently; the pool is then read with the full buckets left out by the query
itself, so a key with thousands of runs waiting costs a take nothing once its bucket is full.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from flue_core.flow.limits import Limits
from flue_cloudflare import codec
from flue_cloudflare.sql import Sql

Bucket = tuple[str, str | None]  # (workflow, key value)


def _in_buckets(column: str, nulls: int, keyed: int) -> str:
    """A condition true for rows in the buckets that parameter ``?nulls`` (a JSON list of workflows:
    their runs without a key) and ``?keyed`` (a JSON list of ``[workflow, key]``) name."""
    return (
        f"(({column} IS NULL AND workflow IN (SELECT value FROM json_each(?{nulls})))"
        f" OR ({column} IS NOT NULL AND (workflow, {column}) IN"
        f" (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?{keyed}))))"
    )


#: ?1 the workflows, ?2 ``only`` (or NULL), ?3 runs to skip, ?4 how many; ?5-?8 the full buckets.
_CANDIDATES = (
    "SELECT run_id, workflow, concurrency_key, rate_key, started_at FROM runs"
    " WHERE ready_at IS NOT NULL AND workflow IN (SELECT value FROM json_each(?1))"
    " AND (?2 IS NULL OR run_id IN (SELECT value FROM json_each(?2)))"
    " AND run_id NOT IN (SELECT value FROM json_each(?3))"
    f" AND NOT {_in_buckets('concurrency_key', 5, 6)}"
    f" AND NOT (started_at IS NULL AND {_in_buckets('rate_key', 7, 8)})"
    " ORDER BY priority DESC, ready_at, run_id LIMIT ?4"
)


class PoolTake:
    """One ``take_ready``: the buckets' counts at its start, and the runs it took since."""

    def __init__(self, sql: Sql, workflows: Mapping[str, Limits], now: datetime) -> None:
        self.sql, self.workflows, self.now = sql, workflows, now
        self.held: dict[Bucket, int] = {}
        # Per rate bucket: starts counted, and the oldest of them (``now`` for runs taken, not started).
        self.starts: dict[Bucket, tuple[int, datetime]] = {}
        capped = [name for name, limits in workflows.items() if limits.concurrency is not None]
        if capped:
            rows = sql.rows(
                "SELECT workflow, concurrency_key, count(*) AS n FROM runs WHERE status IN ('queued', 'running')"
                " AND owner IS NOT NULL AND workflow IN (SELECT value FROM json_each(?))"
                " GROUP BY workflow, concurrency_key",
                codec.dumps(capped),
            )
            self.held = {(row["workflow"], row["concurrency_key"]): row["n"] for row in rows}
        for name, limits in workflows.items():
            if limits.rate is not None:
                self._count_starts(name, limits)

    def _count_starts(self, workflow: str, limits: Limits) -> None:
        cutoff = codec.when(self.now - timedelta(seconds=limits.per or 0))
        for row in self.sql.rows(
            "SELECT rate_key, count(*) AS n, min(started_at) AS oldest FROM runs"
            " WHERE workflow = ? AND started_at IS NOT NULL AND started_at > ? GROUP BY rate_key",
            workflow, cutoff,
        ):  # fmt: skip
            self.starts[workflow, row["rate_key"]] = (row["n"], codec.moment(row["oldest"]) or self.now)
        for row in self.sql.rows(
            "SELECT rate_key, count(*) AS n FROM runs WHERE workflow = ? AND status IN ('queued', 'running')"
            " AND owner IS NOT NULL AND status = 'queued' AND started_at IS NULL GROUP BY rate_key",
            workflow,
        ):
            self._count(workflow, row["rate_key"], row["n"])

    def _count(self, workflow: str, key: str | None, n: int) -> None:
        count, oldest = self.starts.get((workflow, key), (0, self.now))
        self.starts[workflow, key] = (count + n, min(oldest, self.now))

    def _full(self) -> tuple[list[Bucket], list[Bucket]]:
        """The full concurrency buckets and the spent rate buckets."""
        workflows = self.workflows
        held = [b for b, n in self.held.items() if (c := workflows[b[0]].concurrency) is not None and n >= c]
        spent = [b for b, (n, _) in self.starts.items() if (r := workflows[b[0]].rate) is not None and n >= r]
        return held, spent

    def candidates(self, only: Collection[str] | None, skipped: Collection[str], limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` runs of the pool in the order they are taken, none of a full bucket, none
        of ``skipped``, and with ``only``, just those."""
        held, spent = self._full()

        def split(buckets: list[Bucket]) -> tuple[str, str]:
            nulls = [workflow for workflow, key in buckets if key is None]
            return codec.dumps(nulls), codec.dumps([[workflow, key] for workflow, key in buckets if key is not None])

        return self.sql.rows(
            _CANDIDATES,
            codec.dumps(list(self.workflows)),
            None if only is None else codec.dumps(list(only)),
            codec.dumps(list(skipped)),
            limit,
            *split(held),
            *split(spent),
        )

    def allows(self, row: dict[str, Any]) -> bool:
        """Whether the run may be taken, counting the runs this take took."""
        limits = self.workflows[row["workflow"]]
        held = self.held.get((row["workflow"], row["concurrency_key"]), 0)
        if limits.concurrency is not None and held >= limits.concurrency:
            return False
        starts = self.starts.get((row["workflow"], row["rate_key"]), (0, self.now))[0]
        return limits.rate is None or row["started_at"] is not None or starts < limits.rate

    def took(self, row: dict[str, Any]) -> None:
        bucket = (row["workflow"], row["concurrency_key"])
        self.held[bucket] = self.held.get(bucket, 0) + 1
        if row["started_at"] is None:
            self._count(row["workflow"], row["rate_key"], 1)

    def retry_at(self, only: Collection[str] | None) -> datetime | None:
        """When the earliest spent rate bucket that still has never-started runs in the pool has room."""
        soonest = None
        for workflow, key in self._full()[1]:
            waiting = self.sql.one(
                "SELECT run_id FROM runs WHERE workflow = ? AND rate_key IS ? AND ready_at IS NOT NULL"
                " AND started_at IS NULL AND (? IS NULL OR run_id IN (SELECT value FROM json_each(?))) LIMIT 1",
                workflow, key, *[None if only is None else codec.dumps(list(only))] * 2,
            )  # fmt: skip
            if waiting is not None:
                at = self.starts[workflow, key][1] + timedelta(seconds=self.workflows[workflow].per or 0)
                soonest = at if soonest is None else min(soonest, at)
        return soonest


async def take(
    sql: Sql,
    workflows: Mapping[str, Limits],
    limit: int,
    only: Collection[str] | None,
    now: datetime,
    take_one: Callable[[str], Awaitable[str | None]],
) -> tuple[list[str], datetime | None]:
    """Take up to ``limit`` runs with ``take_one(run_id)`` (the record's JSON, or ``None``: the run
    changed meanwhile); return those taken and the ``retry_at`` of :class:`~flue_core.flow.limits.Taken`."""
    if not workflows or (only is not None and not only):
        return [], None
    plan, taken, skipped = PoolTake(sql, workflows, now), [], set()
    while len(taken) < limit:
        rows = plan.candidates(only, skipped, limit - len(taken))
        if not rows:
            break
        # Each row is taken, or skipped, or its bucket filled meanwhile: the next page leaves it out.
        for row in rows:
            if len(taken) >= limit or not plan.allows(row):
                continue
            record = await take_one(row["run_id"])
            if record is None:
                skipped.add(row["run_id"])
            else:
                taken.append(record)
                plan.took(row)
    return taken, plan.retry_at(only)
