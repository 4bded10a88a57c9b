"""The SQLite store's flow control: takes from the ready pool under per-key limits, and debounce folding.

Each function is one unit of a writer batch (it runs on the connection thread, in the batch's
``BEGIN IMMEDIATE`` transaction), so the counts it reads hold for every process until it commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from flue_core.flow.limits import Limits
from flue_core.models import format_timestamp, parse_timestamp
from flue_core.store import NewRun
from flue_node_like.sqlite_rows import COLUMNS, write_event

Bucket = tuple[str, str | None]  # (workflow, key value); ``None`` is the bucket of runs without a key

#: Keys of one workflow up to this many are bound one by one; more go in as one JSON array.
_BOUND_ONE_BY_ONE = 32

#: The ready pool in take order, read from its index alone: the rows of a full bucket are skipped
#: there, never fetched. A take of named runs (``only``) finds them by id instead.
_POOL = (
    "SELECT run_id, workflow, concurrency_key, rate_key, started_at IS NULL"
    " FROM flue_runs{} WHERE status = 'queued' AND owner IS NULL"
)


class _Counts:
    """What holds a take back: runs per concurrency bucket and first starts per rate bucket."""

    def __init__(self, conn: sqlite3.Connection, limits: Mapping[str, Limits], now: datetime) -> None:
        self.concurrency = {name: lim.concurrency for name, lim in limits.items() if lim.concurrency is not None}
        self.rate = {
            name: (lim.rate, lim.per) for name, lim in limits.items() if lim.rate is not None and lim.per is not None
        }
        self.now = now
        self.held: dict[Bucket, int] = {}
        self.started: dict[Bucket, int] = {}  # first starts in the window, and runs taken not started yet
        self.window: dict[Bucket, tuple[int, str]] = {}  # the first starts alone: how many, the oldest
        names = [*self.concurrency, *(name for name in self.rate if name not in self.concurrency)]
        if not names:
            return
        # Held runs are few (running, or queued for a worker): they are read, not counted in SQL.
        for workflow, concurrency_key, rate_key, pending in conn.execute(
            "SELECT workflow, concurrency_key, rate_key, status = 'queued' AND started_at IS NULL"
            f" FROM flue_runs INDEXED BY flue_runs_held WHERE owner IS NOT NULL AND status IN ('queued', 'running')"
            f" AND workflow IN ({_marks(names)})",
            names,
        ):
            if workflow in self.concurrency:
                bucket = (workflow, concurrency_key)
                self.held[bucket] = self.held.get(bucket, 0) + 1
            if pending and workflow in self.rate:
                self._start((workflow, rate_key))
        for workflow in self.rate:
            for rate_key, count, oldest in conn.execute(
                "SELECT rate_key, COUNT(*), MIN(started_at) FROM flue_runs INDEXED BY flue_runs_started"
                " WHERE workflow = ? AND started_at > ? GROUP BY rate_key",
                (workflow, self.since(workflow)),
            ):
                self.window[(workflow, rate_key)] = (count, oldest)
                self._start((workflow, rate_key), count)

    def since(self, workflow: str) -> str:
        """Where the rate window of ``workflow`` begins (a first start later than this counts)."""
        return format_timestamp(self.now - timedelta(seconds=self.rate[workflow][1]))

    def _start(self, bucket: Bucket, count: int = 1) -> None:
        self.started[bucket] = self.started.get(bucket, 0) + count

    def take(self, workflow: str, concurrency_key: str | None, rate_key: str | None, fresh: bool) -> bool:
        """Count a run as taken if its buckets have room; ``False`` (nothing counted) if not."""
        if self.concurrency_full(workflow, concurrency_key) or (fresh and self.rate_full(workflow, rate_key)):
            return False
        if workflow in self.concurrency:
            self.held[(workflow, concurrency_key)] = self.held.get((workflow, concurrency_key), 0) + 1
        if fresh and workflow in self.rate:
            self._start((workflow, rate_key))
        return True

    def concurrency_full(self, workflow: str, key: str | None) -> bool:
        cap = self.concurrency.get(workflow)
        return cap is not None and self.held.get((workflow, key), 0) >= cap

    def rate_full(self, workflow: str, key: str | None) -> bool:
        limit = self.rate.get(workflow)
        return limit is not None and self.started.get((workflow, key), 0) >= limit[0]

    def full_concurrency_buckets(self) -> list[Bucket]:
        return [bucket for bucket in self.held if self.concurrency_full(*bucket)]

    def full_rate_buckets(self) -> list[Bucket]:
        return [bucket for bucket in self.started if self.rate_full(*bucket)]

    def room_again(self, conn: sqlite3.Connection, bucket: Bucket) -> datetime:
        """When a full rate bucket has room again: once as many of its counted starts as put it at its
        limit have left the window, oldest first (runs taken and not started count as started now)."""
        workflow, key = bucket
        rate, per = self.rate[workflow]
        leaving = self.started[bucket] - rate  # the index of the last to leave, in start order
        in_window, oldest = self.window.get(bucket, (0, ""))
        if leaving >= in_window:
            return self.now + timedelta(seconds=per)
        if leaving > 0:  # over the limit (started past a take, or the limit was lowered): one more row
            (oldest,) = conn.execute(
                "SELECT started_at FROM flue_runs INDEXED BY flue_runs_started WHERE workflow = ? AND started_at > ?"
                " AND rate_key IS ? ORDER BY started_at LIMIT 1 OFFSET ?",
                (workflow, self.since(workflow), key, leaving),
            ).fetchone()
        return parse_timestamp(oldest) + timedelta(seconds=per)


def take_ready(
    conn: sqlite3.Connection,
    owner: str,
    workflows: Mapping[str, Limits],
    limit: int,
    only: Collection[str] | None,
    now: datetime,
) -> tuple[list[tuple], datetime | None]:
    """Give ``owner`` up to ``limit`` runs of the pool (rows of :data:`COLUMNS`, in take order) and
    the time to look again for runs left only by a spent rate limit (see ``RunStore.take_ready``)."""
    wanted = None if only is None else list(only)
    if limit <= 0 or not workflows or wanted == []:
        return [], None
    names = list(workflows)
    counts = _Counts(conn, {name: lim for name, lim in workflows.items() if lim.limited}, now)
    chosen: list[str] = []
    rows: list[tuple] = []
    # Page by page: the buckets full when a page is read are left out by the query itself; a bucket
    # that fills within a page leaves the rest of its runs to be skipped here, and the next page
    # (read only then) leaves it out too. Taken runs leave the pool with each page.
    while len(chosen) < limit:
        need = limit - len(chosen)
        sql, params = _pool_query(names, wanted, counts)
        page = conn.execute(f"{sql} ORDER BY priority DESC, ready_at, run_id LIMIT ?", (*params, need)).fetchall()
        taken = [run_id for run_id, *buckets in page if counts.take(*buckets)]
        rows.extend(_own(conn, owner, taken))
        chosen.extend(taken)
        if len(page) < need or len(taken) == len(page):
            break
    order = {run_id: position for position, run_id in enumerate(chosen)}
    rows.sort(key=lambda row: order[row[0]])
    return rows, _retry_at(conn, names, wanted, counts)


def _pool_query(
    names: list[str], wanted: list[str] | None, counts: _Counts, *, held_by_rate: list[Bucket] | None = None
) -> tuple[str, list[object]]:
    """The pool's runs of ``names`` (and ``wanted``) outside full concurrency buckets, and outside full
    rate buckets (runs that never started); with ``held_by_rate``, inside those rate buckets instead."""
    sql = _POOL.format(" INDEXED BY flue_runs_pool" if wanted is None else "") + f" AND workflow IN ({_marks(names)})"
    params: list[object] = list(names)
    if wanted is not None:
        sql += f" AND run_id IN ({_marks(wanted)})"
        params.extend(wanted)
    clause, bucket_params = _in_buckets("concurrency_key", counts.full_concurrency_buckets())
    if clause:
        sql += f" AND NOT ({clause})"
        params.extend(bucket_params)
    rate = counts.full_rate_buckets() if held_by_rate is None else held_by_rate
    clause, bucket_params = _in_buckets("rate_key", rate, "started_at IS NULL AND ")
    if clause:
        sql += f" AND NOT ({clause})" if held_by_rate is None else f" AND ({clause})"
        params.extend(bucket_params)
    return sql, params


def _own(conn: sqlite3.Connection, owner: str, run_ids: list[str]) -> list[tuple]:
    if not run_ids:
        return []
    return conn.execute(
        f"UPDATE flue_runs SET owner = ? WHERE run_id IN ({_marks(run_ids)}) AND status = 'queued' AND owner IS NULL"
        f" RETURNING {COLUMNS}",
        (owner, *run_ids),
    ).fetchall()


def _retry_at(conn: sqlite3.Connection, names: list[str], wanted: list[str] | None, counts: _Counts) -> datetime | None:
    """The earliest time a full rate bucket that holds back a run of the pool (and only it does: its
    concurrency bucket has room) has room again; ``None`` when no run is held back so."""
    full = counts.full_rate_buckets()
    if not full:
        return None
    sql, params = _pool_query(names, wanted, counts, held_by_rate=full)
    held = conn.execute(f"SELECT DISTINCT workflow, rate_key FROM ({sql})", params).fetchall()
    return min((counts.room_again(conn, bucket) for bucket in held), default=None)


def _in_buckets(column: str, buckets: Iterable[Bucket], also: str = "") -> tuple[str, list[object]]:
    """An SQL condition true for runs in one of ``buckets`` (by workflow and ``column``), and its parameters."""
    by_workflow: dict[str, list[str | None]] = {}
    for workflow, key in buckets:
        by_workflow.setdefault(workflow, []).append(key)
    clauses: list[str] = []
    params: list[object] = []
    for workflow, keys in by_workflow.items():
        named = [key for key in keys if key is not None]
        terms = [f"{column} IS NULL"] if len(named) < len(keys) else []
        if len(named) > _BOUND_ONE_BY_ONE:
            terms.append(f"{column} IN (SELECT value FROM json_each(?))")
            params_named: list[object] = [json.dumps(named)]
        else:
            terms.extend([f"{column} IN ({_marks(named)})"] if named else [])
            params_named = list(named)
        clauses.append(f"(workflow = ? AND {also}({' OR '.join(terms)}))")
        params.extend((workflow, *params_named))
    return " OR ".join(clauses), params


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" * len(values))


def running_in_bucket(conn: sqlite3.Connection, workflow: str, concurrency_key: str | None) -> int:
    """How many runs of ``workflow`` with this ``concurrency_key`` are running (``claim``'s recheck)."""
    (running,) = conn.execute(
        "SELECT COUNT(*) FROM flue_runs INDEXED BY flue_runs_held WHERE owner IS NOT NULL"
        " AND status IN ('queued', 'running') AND workflow = ? AND concurrency_key IS ? AND status = 'running'",
        (workflow, concurrency_key),
    ).fetchone()
    return running


def fold_debounced(conn: sqlite3.Connection, run: NewRun, input_json: str | None) -> tuple | None:
    """Fold ``run`` into the pending debounce run of its workflow and key not asked to cancel, if there
    is one: it takes the new input, due time, priority and concurrency and rate keys (they follow the
    input; its indexes move with them), and a ``run_debounced`` event. Returns its row, or ``None``."""
    assert run.debounce_key is not None and run.start_at is not None
    start_at = format_timestamp(run.start_at)
    # The unique index of pending debounce runs finds it; a scheduled run with a debounce key waits
    # for nothing else (it was admitted so, and leaves ``scheduled`` only when woken). A run asked to
    # cancel is not in that index: a new run is created beside it.
    row = conn.execute(
        "UPDATE flue_runs SET input = ?, wake_at = ?, priority = ?, concurrency_key = ?, rate_key = ?"
        " WHERE workflow = ? AND debounce_key = ? AND status = 'scheduled' AND cancel_requested = 0"
        f" RETURNING {COLUMNS}",
        (input_json, start_at, run.priority, run.concurrency_key, run.rate_key, run.workflow, run.debounce_key),
    ).fetchone()
    if row is not None:
        write_event(conn, row[0], "run_debounced", {"input": run.input, "startAt": start_at}, run.created_at)
    return row
