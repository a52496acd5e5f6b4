-- Windowed aggregates of pulse-batch jobs, one row per (user, metric, window, start):
-- readable with plain SQL, plus the mergeable state so late readings merge in.
-- Checkpoints of the sources live in job_checkpoints, committed with these rows.
CREATE TABLE aggregates (
    user_id text NOT NULL,
    metric text NOT NULL,
    unit text NOT NULL,
    "window" text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    count bigint NOT NULL,
    sum double precision NOT NULL,
    avg double precision NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    stddev double precision,
    p50 double precision NOT NULL,
    p95 double precision NOT NULL,
    p99 double precision NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (user_id, metric, "window", window_start)
);
