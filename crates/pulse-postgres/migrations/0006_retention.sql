-- Retention (see retention.rs): when events were stored, and the highest offset retention
-- has deleted through, so that offsets are never reused after pruning.

-- Stored time, by which `max_age` is applied. Existing events count as stored now (a
-- constant default: adding the column rewrites nothing). New events get the append
-- function's clock, taken under the append lock, so it grows with the offset.
ALTER TABLE events ADD COLUMN stored_at timestamptz NOT NULL DEFAULT now();

-- One row: every event at or below `pruned_through` was deleted by retention, except the
-- ones a dead letter still points to. The log's last offset is
-- greatest(max(events.offset), pruned_through), so pruning the newest events does not
-- make the next append reuse their offsets.
CREATE TABLE retention (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pruned_through bigint NOT NULL
);
INSERT INTO retention (pruned_through) VALUES (0);

-- Retention keeps events a dead letter points to, and deleting an event checks the
-- dead letters' foreign key: both look dead letters up by offset.
CREATE INDEX dead_letters_offset ON dead_letters ("offset");

-- The append function of migration 0004, numbering after the high-water mark above and
-- recording the stored time.
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
    now_stored timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    -- One statement, one snapshot: a retention step that deleted the newest events and
    -- raised pruned_through is seen entirely or not at all.
    SELECT greatest(coalesce(max(e."offset"), 0), (SELECT r.pruned_through FROM retention r))
    INTO previous FROM events e;
    now_stored := clock_timestamp();

    BEGIN
        INSERT INTO events ("offset", id, source, type, subject, time, datacontenttype,
                            dataschema, data, extensions, stored_at)
        SELECT previous + t.ord, t.id, t.source, t.type, t.subject, t.time,
               t.datacontenttype, t.dataschema, t.data, t.extensions, now_stored
        FROM unnest(p_ids, p_sources, p_types, p_subjects, p_times, p_content_types,
                    p_schemas, p_data, p_extensions)
             WITH ORDINALITY AS t(id, source, type, subject, time, datacontenttype,
                                  dataschema, data, extensions, ord);
        GET DIAGNOSTICS stored = ROW_COUNT;
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
            RETURNING 1
        )
        SELECT array_agg(i.stored_offset ORDER BY i.ord), (SELECT count(*) FROM inserted)
        INTO existing, stored
        FROM input i;
    END;

    IF stored > 0 THEN
        PERFORM pg_notify(channel, (previous + stored)::text);
    END IF;
END;
$$;
