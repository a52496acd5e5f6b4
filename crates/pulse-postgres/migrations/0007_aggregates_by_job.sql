-- Aggregates belong to a job: two jobs computing the same window for the same user and
-- metric (say from different event types) keep their own rows, each merged only with its
-- own job's checkpoint. Rows written before this migration had no job; they keep the
-- empty name.
ALTER TABLE aggregates ADD COLUMN job text NOT NULL DEFAULT '';
ALTER TABLE aggregates ALTER COLUMN job DROP DEFAULT;
ALTER TABLE aggregates DROP CONSTRAINT aggregates_pkey;
ALTER TABLE aggregates ADD PRIMARY KEY (job, user_id, metric, "window", window_start);
