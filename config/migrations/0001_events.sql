-- Every event Sightline emits, one row per event id. ReplacingMergeTree collapses redelivered
-- copies of the same event (same id, same sort key); read with FINAL for exact counts.
CREATE TABLE IF NOT EXISTS events
(
    id         String,
    kind       LowCardinality(String),
    stream_id  LowCardinality(String),
    pts_ms     Int64 CODEC(Delta, ZSTD),
    end_ms     Nullable(Int64),
    wall_time  DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    text       String CODEC(ZSTD),
    score      Float32,
    model      LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (stream_id, kind, pts_ms, id);
