-- General Durable Streams (flue_postgres/streams.py): a stream as flue_core.streams.rows.StreamRow has
-- it, its records (one per append) and its producers' states. The rules are flue_core.streams.rules,
-- run in Python over a transaction; changes are announced on the channel @D@.

CREATE SEQUENCE @S@.ds_ids;

CREATE TABLE @S@.ds_streams (
    id           bigint PRIMARY KEY,
    path         text COLLATE "C" NOT NULL UNIQUE,
    content_type text NOT NULL,
    tail         bigint NOT NULL,
    touched_at   double precision NOT NULL,
    ttl          bigint,
    expires_at   double precision,
    closed       boolean NOT NULL DEFAULT false,
    closed_by    text,
    stream_seq   text COLLATE "C",
    fork_of      bigint,
    fork_at      bigint NOT NULL DEFAULT 0,
    forks        integer NOT NULL DEFAULT 0,
    deleted      boolean NOT NULL DEFAULT false,
    spec         text NOT NULL
);
CREATE INDEX ds_streams_expiry ON @S@.ds_streams (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX ds_streams_ttl ON @S@.ds_streams ((touched_at + ttl)) WHERE ttl IS NOT NULL;

CREATE TABLE @S@.ds_records (
    stream_id bigint NOT NULL,
    pos       bigint NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (stream_id, pos)
);

CREATE TABLE @S@.ds_producers (
    stream_id   bigint NOT NULL,
    producer_id text NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
);
