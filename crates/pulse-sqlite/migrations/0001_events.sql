-- Schema version 1: the event log, its high-water mark and consumer group positions.
-- `seq` is the event's offset; it is assigned by the single writer and never reused,
-- even after retention deleted the newest rows (log_meta keeps the high-water mark).
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    type            TEXT NOT NULL,
    source          TEXT NOT NULL,
    subject         TEXT,
    time            INTEGER NOT NULL, -- nanoseconds since the Unix epoch, UTC
    datacontenttype TEXT,
    dataschema      TEXT,
    extensions      TEXT,             -- JSON object, NULL when there are none
    data            BLOB
);
CREATE UNIQUE INDEX events_id ON events (id);

CREATE TABLE log_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE consumer_groups (
    name      TEXT PRIMARY KEY,
    pattern   TEXT NOT NULL,
    committed INTEGER NOT NULL
) WITHOUT ROWID;
