-- Schema version 4: the failed deliveries of each group's pending events, so that
-- max_deliver counts attempts across restarts. A row is written when a delivery fails
-- (nack or ack-wait expiry) and removed once the group's committed offset passes it.
CREATE TABLE delivery_attempts (
    grp           TEXT NOT NULL,
    event_seq     INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    first_failure INTEGER NOT NULL, -- nanoseconds since the Unix epoch, UTC
    PRIMARY KEY (grp, event_seq)
) WITHOUT ROWID;
