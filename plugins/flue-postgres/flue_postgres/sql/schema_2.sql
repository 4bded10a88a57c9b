-- Version 2 of Flue's tables: flow control. A new schema runs schema.sql then this; a schema of
-- version 1 is upgraded in place by this alone (flue_postgres/schema.py), its runs keeping priority 0
-- and no keys.

ALTER TABLE @S@.runs
    ADD COLUMN priority        integer NOT NULL DEFAULT 0,
    ADD COLUMN concurrency_key text COLLATE "C",
    ADD COLUMN rate_key        text COLLATE "C",
    ADD COLUMN debounce_key    text COLLATE "C";

-- A run in the ready pool carries what take() sorts and limits it by, so that the pool is read alone.
-- started: the run started before (a resume), so no rate limit holds it.
ALTER TABLE @S@.ready
    ADD COLUMN priority        integer NOT NULL DEFAULT 0,
    ADD COLUMN concurrency_key text COLLATE "C",
    ADD COLUMN rate_key        text COLLATE "C",
    ADD COLUMN started         boolean NOT NULL DEFAULT false;
UPDATE @S@.ready q SET started = true FROM @S@.runs r WHERE r.run_id = q.run_id AND r.started_at IS NOT NULL;

-- The pool in the order runs are taken: highest priority, then oldest.
DROP INDEX IF EXISTS @S@.ready_order;
CREATE INDEX ready_order ON @S@.ready (priority DESC, ready_at, run_id);
-- Whether a rate bucket that is spent still holds runs back (take()'s retry time).
CREATE INDEX ready_rate ON @S@.ready (workflow, rate_key) WHERE NOT started;

-- Runs held by a worker, by workflow and concurrency key: concurrency limits and adoption count these
-- only (the ready pool, however long, is not in this index).
DROP INDEX IF EXISTS @S@.runs_active;
CREATE INDEX runs_busy ON @S@.runs (workflow, concurrency_key) WHERE status IN ('queued', 'running') AND owner IS NOT NULL;
-- Starts by time: a rate limit counts those of its window.
CREATE INDEX runs_started ON @S@.runs (workflow, started_at) WHERE started_at IS NOT NULL;
-- At most one pending debounced run per workflow and key: racing admissions fold into it. A run asked to
-- cancel is not pending: the next start creates a run beside it. (flue_postgres.schema checks this
-- definition on every open of a version-2 schema.)
CREATE UNIQUE INDEX runs_debounce ON @S@.runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL AND status = 'scheduled' AND NOT cancel_requested;
-- runs.list() by key.
CREATE INDEX runs_concurrency_key ON @S@.runs (concurrency_key, created_at, run_id) WHERE concurrency_key IS NOT NULL;
CREATE INDEX runs_rate_key ON @S@.runs (rate_key, created_at, run_id) WHERE rate_key IS NOT NULL;
