"""Admissions alone in a batch, as one SQL statement: the writer's fast path.

A batch of admissions (what concurrent ``start()`` callers, or one, send) is inserted by one
statement over arrays (``unnest``): records, first events, places in the ready pool and the change
announcement, with no PL/pgSQL in between — 32 admissions cost the server less than half the CPU
they cost through ``apply()`` (``bench/README.md``). An admission the statement did not insert (its
key is bound, its id taken, or it is this very call sent again after a lost connection) is answered
by ``apply()`` (``op_admit`` of ``sql/runs.sql``), which knows each case. Admissions that take over a
re-run's steps always go that way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from flue_postgres.settings import PostgresSettings

__all__ = ["FAST_LIMIT", "AdmitMany", "fast"]

#: Admissions inserted by one statement at most: their ids must fit one NOTIFY payload (8,000 bytes).
FAST_LIMIT = 128


def fast(ops: list[list[Any]]) -> bool:
    """Whether a batch can take the fast path: admissions only, none taking over steps, none debounced
    (a debounced start may fold into a pending run)."""
    return 0 < len(ops) <= FAST_LIMIT and all(op[0] == "admit" and not op[14] and op[20] is None for op in ops)


class AdmitMany:
    """The statement, for one schema."""

    def __init__(self, settings: PostgresSettings) -> None:
        s = f'"{settings.schema}"'
        self.sql = f"""
WITH new AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                       $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::boolean[],
                       $15::timestamptz[], $16::integer[], $17::text[], $18::text[])
    AS n(id, wf, key, input, created, owner, parent, start_at, wfor, carrier, first, rerun_of, opid, claim, started,
         priority, ckey, rkey)
), ins AS (
  INSERT INTO {s}.runs AS r (run_id, workflow, status, input, key, attempt, created_at, started_at, owner, parent_run_id,
      wake_at, waiting_for, carrier, ready_at, rerun_of, admit_op, claim_op, priority, concurrency_key, rate_key)
  SELECT id, wf, CASE WHEN start_at IS NOT NULL THEN 'scheduled' WHEN claim THEN 'running' ELSE 'queued' END,
      input, key, CASE WHEN claim THEN 1 ELSE 0 END, created, started, CASE WHEN start_at IS NULL THEN owner END,
      parent, start_at, wfor, carrier, created, rerun_of, opid, CASE WHEN claim THEN opid END, priority, ckey, rkey
  FROM new
  ON CONFLICT DO NOTHING
  RETURNING r.run_id, r.workflow, r.owner, r.wake_at, r.created_at, r.priority, r.concurrency_key, r.rate_key
), events AS (
  INSERT INTO {s}.events (run_id, idx, data) SELECT new.id, 0, new.first FROM new JOIN ins ON ins.run_id = new.id
), pool AS (
  INSERT INTO {s}.ready (run_id, workflow, ready_at, priority, concurrency_key, rate_key)
  SELECT run_id, workflow, created_at, priority, concurrency_key, rate_key FROM ins WHERE owner IS NULL AND wake_at IS NULL
), note AS (
  SELECT pg_notify('{settings.channel}', $19 || ' ' || string_agg(k, ' ')) FROM (
    SELECT run_id AS k FROM ins
    UNION ALL SELECT ':ready' WHERE EXISTS (SELECT 1 FROM ins WHERE owner IS NULL)
  ) AS keys HAVING count(*) > 0
)
SELECT (SELECT array_agg(run_id) FROM ins), (SELECT count(*) FROM note)"""

    async def run(self, conn: asyncpg.Connection, ops: list[list[Any]], origin: str) -> set[str]:
        """Insert what can be; return the ids inserted."""
        columns: list[list[Any]] = [[] for _ in range(18)]
        for op in ops:
            (_, opid, run_id, workflow, key, input_, created, owner, parent, start_at, waiting_for, carrier, first,
             rerun_of, _, claim, started, priority, concurrency_key, rate_key, _, _) = op  # fmt: skip
            values = (run_id, workflow, key, input_, _time(created), owner, parent, _time(start_at), waiting_for,
                      carrier, first, rerun_of, opid, claim, _time(started), priority, concurrency_key, rate_key)  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        inserted, _ = await conn.fetchrow(self.sql, *columns, origin)
        return set(inserted or ())


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
