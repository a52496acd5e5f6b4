-- Schema version 2: replay by time, full consumer group configuration, dead letters.
CREATE INDEX events_time ON events (time);

ALTER TABLE consumer_groups ADD COLUMN start TEXT NOT NULL DEFAULT 'earliest';
ALTER TABLE consumer_groups ADD COLUMN max_deliver INTEGER NOT NULL DEFAULT 5;
ALTER TABLE consumer_groups ADD COLUMN ack_wait_ms INTEGER NOT NULL DEFAULT 30000;

CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    grp           TEXT NOT NULL,
    event_seq     INTEGER NOT NULL,
    error         TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    first_failure INTEGER NOT NULL, -- nanoseconds since the Unix epoch, UTC
    last_failure  INTEGER NOT NULL,
    redriven      INTEGER NOT NULL DEFAULT 0 -- handed back to the group, waiting for its ack
);
CREATE INDEX dead_letters_grp ON dead_letters (grp, id);
CREATE INDEX dead_letters_event ON dead_letters (event_seq);
