-- Retention by size, `max_bytes` (see retention.rs): the definition of an event's stored
-- size, the stored size of every event appended, and that of every event at or below
-- the pruned range. The events after the pruned range hold the difference, which is what
-- a retention step needs without summing the log.

-- An event's stored size, the one definition every statement uses: the octets of its id,
-- source, type, subject, datacontenttype, dataschema and data, plus the octets of its
-- extensions as jsonb prints them (`{"key": "value", ...}`); an absent attribute counts
-- 0. Fixed-size columns (offset, time, stored time) and PostgreSQL's own overhead (row
-- headers, indexes, TOAST compression) are not counted: this is what publishers sent,
-- the same on every server and after every vacuum, not what the table occupies on disk.
-- A plain SQL expression, inlined into the statements calling it.
CREATE FUNCTION pulse_stored_size(
    id text,
    source text,
    type text,
    subject text,
    datacontenttype text,
    dataschema text,
    data bytea,
    extensions jsonb
) RETURNS bigint
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT octet_length(id)::bigint
         + octet_length(source)
         + octet_length(type)
         + coalesce(octet_length(subject), 0)
         + coalesce(octet_length(datacontenttype), 0)
         + coalesce(octet_length(dataschema), 0)
         + coalesce(octet_length(data), 0)
         + coalesce(octet_length(extensions::text), 0)
$$;

-- One row: the stored size of every event appended, counted from the events stored when
-- this migration ran (those pruned before count 0), through offset `counted_through`.
-- Only the append function writes it, under the append lock, in the transaction storing
-- the events: it never goes down, and retention deleting the newest events leaves it
-- where it was, as with offsets.
CREATE TABLE appended (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    bytes bigint NOT NULL,
    counted_through bigint NOT NULL
);
INSERT INTO appended (bytes, counted_through)
SELECT coalesce(sum(pulse_stored_size(id, source, type, subject, datacontenttype,
                                      dataschema, data, extensions)), 0),
       greatest(coalesce(max("offset"), 0), (SELECT pruned_through FROM retention))
FROM events;

-- `pruned_bytes`: the stored size of every event at or below `pruned_through` (deleted or
-- held by a dead letter), counted like `appended.bytes`; retention steps raise both in
-- one update. `pruned_bytes_through` repeats `pruned_through`, so that a retention step
-- of a Pulse from before this migration (still running during a rolling upgrade), which
-- raises `pruned_through` alone, fails this check and rolls back instead of leaving
-- `pruned_bytes` behind.
ALTER TABLE retention ADD COLUMN pruned_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE retention ADD COLUMN pruned_bytes_through bigint NOT NULL DEFAULT 0;
UPDATE retention r
SET pruned_bytes = coalesce((
        SELECT sum(pulse_stored_size(e.id, e.source, e.type, e.subject, e.datacontenttype,
                                     e.dataschema, e.data, e.extensions))
        FROM events e WHERE e."offset" <= r.pruned_through), 0),
    pruned_bytes_through = r.pruned_through;
ALTER TABLE retention ADD CONSTRAINT pruned_bytes_current
    CHECK (pruned_bytes_through = pruned_through);

-- The append function of migration 0006, also adding the stored size of the new events
-- to `appended`: from the rows it inserted (RETURNING), so that it costs one expression
-- per event and one single-row update per transaction. An append that was already
-- running the function of migration 0006 when this one committed (waiting for the append
-- lock) stores its events uncounted, above `counted_through`; the next append counts
-- them too.
CREATE OR REPLACE FUNCTION pulse_append(
    lock_key bigint,
    channel text,
    p_ids text[],
    p_sources text[],
    p_types text[],
    p_subjects text[],
    p_times timestamptz[],
    p_content_types text[],
    p_schemas text[],
    p_data bytea[],
    p_extensions jsonb[],
    OUT previous bigint,
    OUT existing bigint[]
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stored bigint;
    stored_bytes bigint;
    counted_through bigint;
    uncounted_bytes bigint := 0;
    now_stored timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    -- One statement, one snapshot: a retention step that deleted the newest events and
    -- raised pruned_through is seen entirely or not at all.
    SELECT greatest(coalesce(max(e."offset"), 0), (SELECT r.pruned_through FROM retention r)),
           (SELECT a.counted_through FROM appended a)
    INTO previous, counted_through FROM events e;
    IF counted_through < previous THEN
        SELECT coalesce(sum(pulse_stored_size(e.id, e.source, e.type, e.subject,
                                              e.datacontenttype, e.dataschema, e.data,
                                              e.extensions)), 0)
        INTO uncounted_bytes
        FROM events e WHERE e."offset" > counted_through AND e."offset" <= previous;
    END IF;
    now_stored := clock_timestamp();

    BEGIN
        WITH inserted AS (
            INSERT INTO events ("offset", id, source, type, subject, time, datacontenttype,
                                dataschema, data, extensions, stored_at)
            SELECT previous + t.ord, t.id, t.source, t.type, t.subject, t.time,
                   t.datacontenttype, t.dataschema, t.data, t.extensions, now_stored
            FROM unnest(p_ids, p_sources, p_types, p_subjects, p_times, p_content_types,
                        p_schemas, p_data, p_extensions)
                 WITH ORDINALITY AS t(id, source, type, subject, time, datacontenttype,
                                      dataschema, data, extensions, ord)
            RETURNING pulse_stored_size(id, source, type, subject, datacontenttype,
                                        dataschema, data, extensions) AS size
        )
        SELECT count(*), sum(i.size) INTO stored, stored_bytes FROM inserted i;
        existing := NULL;
    EXCEPTION WHEN unique_violation THEN
        WITH input AS (
            SELECT t.*, e."offset" AS stored_offset
            FROM unnest(p_ids, p_sources, p_types, p_subjects, p_times, p_content_types,
                        p_schemas, p_data, p_extensions)
                 WITH ORDINALITY AS t(id, source, type, subject, time, datacontenttype,
                                      dataschema, data, extensions, ord)
            LEFT JOIN events e ON e.id = t.id
        ), inserted AS (
            INSERT INTO events ("offset", id, source, type, subject, time, datacontenttype,
                                dataschema, data, extensions, stored_at)
            SELECT previous + row_number() OVER (ORDER BY i.ord), i.id, i.source, i.type,
                   i.subject, i.time, i.datacontenttype, i.dataschema, i.data, i.extensions,
                   now_stored
            FROM input i
            WHERE i.stored_offset IS NULL
            RETURNING pulse_stored_size(id, source, type, subject, datacontenttype,
                                        dataschema, data, extensions) AS size
        )
        SELECT array_agg(i.stored_offset ORDER BY i.ord),
               (SELECT count(*) FROM inserted),
               (SELECT sum(n.size) FROM inserted n)
        INTO existing, stored, stored_bytes
        FROM input i;
    END;

    IF stored > 0 OR counted_through < previous THEN
        UPDATE appended
        SET bytes = bytes + coalesce(stored_bytes, 0) + uncounted_bytes,
            counted_through = previous + stored;
    END IF;
    IF stored > 0 THEN
        PERFORM pg_notify(channel, (previous + stored)::text);
    END IF;
END;
$$;
