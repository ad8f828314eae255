-- The language a transcript segment is in (ISO 639-1, from the event's detail) as a column of
-- `events` and of `transcripts`, for per-language analytics without JSON parsing, e.g.
-- SELECT language, count() FROM transcripts GROUP BY language
-- Empty for rows stored before it and for other kinds of event.
ALTER TABLE events ADD COLUMN IF NOT EXISTS language LowCardinality(String) MATERIALIZED JSONExtractString(detail, 'language');
ALTER TABLE transcripts ADD COLUMN IF NOT EXISTS language LowCardinality(String) DEFAULT '';
-- The view feeding `transcripts` again, with the language (migrations run before the sinks start).
DROP VIEW IF EXISTS transcripts_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS transcripts_mv TO transcripts AS
SELECT id, stream_id, pts_ms AS start_ms, ifNull(end_ms, pts_ms) AS end_ms, wall_time, text,
       score AS confidence, model, JSONExtractString(detail, 'language') AS language
FROM events WHERE kind = 'transcript';
