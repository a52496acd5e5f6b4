-- Consumer groups. `scanned` is the highest offset admitted into `deliveries` (matching or
-- not); the committed offset is derived: one below the lowest pending offset, or `scanned`.
CREATE TABLE consumer_groups (
    name text PRIMARY KEY,
    pattern text NOT NULL,
    max_deliver integer NOT NULL,
    ack_wait_ms bigint NOT NULL,
    scanned bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Per-event delivery state of a group: every admitted, not yet settled event. A row is
-- due when `due_at <= now()`; while `in_flight`, `due_at` is the lease deadline of
-- `owner`, the instance that fetched it.
CREATE TABLE deliveries (
    group_name text NOT NULL REFERENCES consumer_groups (name) ON DELETE CASCADE,
    "offset" bigint NOT NULL,
    subject text,
    attempts integer NOT NULL DEFAULT 0,
    in_flight boolean NOT NULL DEFAULT false,
    due_at timestamptz NOT NULL,
    owner text,
    first_failure timestamptz,
    last_error text,
    -- Set for a redriven dead letter: it neither blocks its subject nor holds the
    -- committed offset back, and is removed from `dead_letters` once acknowledged.
    dead_letter_id bigint,
    PRIMARY KEY (group_name, "offset")
);
CREATE INDEX deliveries_subject ON deliveries (group_name, subject, "offset")
    WHERE dead_letter_id IS NULL;
CREATE INDEX deliveries_owner ON deliveries (owner) WHERE in_flight;

CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    group_name text NOT NULL,
    "offset" bigint NOT NULL REFERENCES events ("offset"),
    error text NOT NULL,
    attempts integer NOT NULL,
    first_failure timestamptz NOT NULL,
    last_failure timestamptz NOT NULL
);
CREATE INDEX dead_letters_group ON dead_letters (group_name, id);

-- Live Pulse instances: in-flight work of an instance whose heartbeat stopped is handed
-- to the others without waiting for the ack wait.
CREATE TABLE instances (
    id text PRIMARY KEY,
    heartbeat timestamptz NOT NULL
);
