-- Schema version 3: the stored size of every event and their total, for retention by
-- bytes. An event's size is the byte length of its id, type, source, subject,
-- datacontenttype, dataschema, extensions and data as stored, an absent value counting
-- 0 (the writer computes the same sum for every new row, see size.rs). log_meta
-- 'stored_bytes' is the sum of `size` over the stored rows; every insert and every
-- delete keeps it in step in the same transaction.
ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;

UPDATE events SET size =
      coalesce(octet_length(id), 0)
    + coalesce(octet_length(type), 0)
    + coalesce(octet_length(source), 0)
    + coalesce(octet_length(subject), 0)
    + coalesce(octet_length(datacontenttype), 0)
    + coalesce(octet_length(dataschema), 0)
    + coalesce(octet_length(extensions), 0)
    + coalesce(octet_length(data), 0);

INSERT INTO log_meta (key, value)
    SELECT 'stored_bytes', coalesce(sum(size), 0) FROM events;
