-- Flue's tables in Postgres, version 1: created in the schema @S@ (the URL's ?schema=, default flue).
-- Ids, keys and workflow names compare byte-wise (COLLATE "C"), as Flue orders them. JSON values are
-- kept as text, exactly as written (jsonb would reorder keys and reformat numbers).

CREATE TABLE @S@.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per run: its record, its place in the lifecycle, and the store's own bookkeeping
-- (next_index: the index the stream's next event takes; *_op: the id of the operation that last
-- admitted, took, claimed or parked it, so that a call sent again after a lost connection is recognised).
CREATE TABLE @S@.runs (
    run_id           text COLLATE "C" PRIMARY KEY,
    workflow         text COLLATE "C" NOT NULL,
    status           text NOT NULL,
    input            text,
    key              text COLLATE "C",
    attempt          integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz,
    result           text,
    error            text,
    cancel_requested boolean NOT NULL DEFAULT false,
    owner            text COLLATE "C",
    parent_run_id    text COLLATE "C",
    wake_at          timestamptz,
    waiting_for      text,
    carrier          text,
    ready_at         timestamptz NOT NULL,
    resume           boolean NOT NULL DEFAULT false,
    recoveries       integer NOT NULL DEFAULT 0,
    rerun_of         text COLLATE "C",
    next_index       integer NOT NULL DEFAULT 1,
    admit_op         text,
    claim_op         text,
    claim_resumed    boolean NOT NULL DEFAULT false,
    suspend_op       text,
    take_op          text
);
CREATE UNIQUE INDEX runs_key ON @S@.runs (workflow, key) WHERE key IS NOT NULL;
CREATE INDEX runs_order ON @S@.runs (created_at, run_id);
CREATE INDEX runs_workflow_order ON @S@.runs (workflow, created_at, run_id);
CREATE INDEX runs_status_order ON @S@.runs (status, created_at, run_id);
CREATE INDEX runs_parent ON @S@.runs (parent_run_id, created_at, run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_rerun ON @S@.runs (rerun_of, created_at, run_id) WHERE rerun_of IS NOT NULL;
-- The due-time index: scheduled and waiting runs by the time they are due.
CREATE INDEX runs_due ON @S@.runs (wake_at, run_id) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_ended ON @S@.runs (ended_at) WHERE ended_at IS NOT NULL;
-- Runs held or executing, by workflow: concurrency limits and adoption look here only.
CREATE INDEX runs_active ON @S@.runs (workflow) WHERE status IN ('queued', 'running');

-- The ready pool: queued runs that no worker holds, oldest first. A row here exactly when the run
-- is queued with no owner; a table of its own, so that taking a run (FOR UPDATE SKIP LOCKED) does
-- not rewrite every index of runs.
CREATE TABLE @S@.ready (
    run_id   text COLLATE "C" PRIMARY KEY,
    workflow text COLLATE "C" NOT NULL,
    ready_at timestamptz NOT NULL
);
CREATE INDEX ready_order ON @S@.ready (ready_at, run_id);

CREATE TABLE @S@.events (
    run_id text COLLATE "C" NOT NULL,
    idx    integer NOT NULL,
    data   text NOT NULL,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE @S@.steps (
    run_id text COLLATE "C" NOT NULL,
    name   text NOT NULL,
    value  text NOT NULL,
    seq    bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX steps_order ON @S@.steps (run_id, seq);

-- The signal mailbox; announcement, step_value and delivered_data are the signal_received data, the
-- value its wait's step stores and the signal_delivered data, written when the signal is sent.
CREATE TABLE @S@.signals (
    run_id         text COLLATE "C" NOT NULL,
    seq            integer NOT NULL,
    signal_id      text COLLATE "C" NOT NULL,
    name           text NOT NULL,
    data           text NOT NULL,
    key            text COLLATE "C",
    sent_at        timestamptz NOT NULL,
    announcement   text NOT NULL,
    step_value     text NOT NULL,
    delivered_data text NOT NULL,
    announced      boolean NOT NULL DEFAULT false,
    delivered      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX signals_key ON @S@.signals (run_id, key) WHERE key IS NOT NULL;
CREATE INDEX signals_id ON @S@.signals (run_id, signal_id);

CREATE TABLE @S@.schedules (
    name       text COLLATE "C" PRIMARY KEY,
    definition text NOT NULL,
    created_at text NOT NULL,
    last_tick  text
);

-- Workers, their last heartbeat by the server's clock (hosts' clocks need not agree on leases).
CREATE TABLE @S@.workers (
    worker_id   text COLLATE "C" PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    pid_started text,
    beat        timestamptz NOT NULL
);

-- The answers of rarer operations, kept a few minutes for a call sent again after a lost connection.
CREATE TABLE @S@.ops (
    opid   text COLLATE "C" PRIMARY KEY,
    answer text NOT NULL,
    at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ops_age ON @S@.ops (at);
