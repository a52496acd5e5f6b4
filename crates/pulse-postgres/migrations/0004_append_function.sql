-- The whole append in one statement, so that the append lock is held only while the
-- server works and the commit is flushed, never across client round trips.
--
-- The caller passes events with distinct ids. The function takes the schema's append
-- lock (see append.rs), reads max(offset), inserts the events whose id is not stored yet
-- with offsets previous + 1, previous + 2, ... in input order, and notifies listeners of
-- the new last offset. It returns the last offset before the batch and, per input
-- position, the offset already stored under that id (NULL for a new event), from which
-- the caller derives every offset; `existing` itself is NULL when every event was new.
-- Duplicates are rare (a publisher retrying), so the batch is first inserted as is;
-- only when the unique index on id objects is it inserted again, skipping stored ids. PL/pgSQL runs each statement with a fresh snapshot
-- under READ COMMITTED, so max(offset) is read after the lock is held and sees the
-- previous holder's commit.
CREATE FUNCTION pulse_append(
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
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT coalesce(max(e."offset"), 0) INTO previous FROM events e;

    BEGIN
        INSERT INTO events ("offset", id, source, type, subject, time, datacontenttype,
                            dataschema, data, extensions)
        SELECT previous + t.ord, t.id, t.source, t.type, t.subject, t.time,
               t.datacontenttype, t.dataschema, t.data, t.extensions
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
                                dataschema, data, extensions)
            SELECT previous + row_number() OVER (ORDER BY i.ord), i.id, i.source, i.type,
                   i.subject, i.time, i.datacontenttype, i.dataschema, i.data, i.extensions
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
