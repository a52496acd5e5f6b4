-- The log: one row per stored event, numbered densely from 1 (see append.rs for why
-- offsets can never become visible out of order).
CREATE TABLE events (
    "offset" bigint PRIMARY KEY,
    id text NOT NULL UNIQUE,
    source text NOT NULL,
    type text NOT NULL,
    subject text,
    time timestamptz NOT NULL,
    datacontenttype text,
    dataschema text,
    data bytea,
    extensions jsonb
);
