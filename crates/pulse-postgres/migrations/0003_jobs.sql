-- One row per (job, tick) that some instance has claimed: the primary key makes a
-- scheduled run happen once per tick across every instance.
CREATE TABLE job_leases (
    job text NOT NULL,
    tick timestamptz NOT NULL,
    holder text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, tick)
);

-- The latest checkpoint of each batch job, opaque to the log.
CREATE TABLE job_checkpoints (
    job text PRIMARY KEY,
    checkpoint bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
