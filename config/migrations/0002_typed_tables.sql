-- Typed tables beside `events`. `events` keeps every event with its kind-specific details as JSON
-- in `detail` (never vectors); materialized views fan each kind out into its own table as rows
-- arrive. `frames` (with its feature vector) is written by the sink directly. Every table is a
-- ReplacingMergeTree on the event id, so a redelivered event leaves one row (read with FINAL for
-- exact counts). Retention (TTL) is set at start from `clickhouse.retention_days`.
ALTER TABLE events ADD COLUMN IF NOT EXISTS detail String DEFAULT '' CODEC(ZSTD);

-- Registered streams, snapshotted by the sink every `sink.status_interval_s`.
CREATE TABLE IF NOT EXISTS streams
(
    id         String,
    name       String,
    url        String,
    state      LowCardinality(String),
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    deleted    UInt8
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;

CREATE TABLE IF NOT EXISTS scenes
(
    id          String,
    stream_id   LowCardinality(String),
    start_ms    Int64 CODEC(Delta, ZSTD),
    wall_time   DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    keyframe_id String,
    score       Float32,
    model       LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (stream_id, start_ms, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS scenes_mv TO scenes AS
SELECT id, stream_id, pts_ms AS start_ms, wall_time,
       JSONExtractString(detail, 'keyframe_id') AS keyframe_id, score, model
FROM events WHERE kind = 'scene';

-- Each scene with the media time it ends at (the next cut of its stream; NULL while it lasts).
CREATE VIEW IF NOT EXISTS scene_spans AS
SELECT stream_id, id, start_ms,
       leadInFrame(toNullable(start_ms)) OVER (PARTITION BY stream_id ORDER BY start_ms
           ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS end_ms,
       keyframe_id, score, wall_time
FROM scenes FINAL;

CREATE TABLE IF NOT EXISTS transcripts
(
    id         String,
    stream_id  LowCardinality(String),
    start_ms   Int64 CODEC(Delta, ZSTD),
    end_ms     Int64 CODEC(Delta, ZSTD),
    wall_time  DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    text       String CODEC(ZSTD),
    confidence Float32,
    model      LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (stream_id, start_ms, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS transcripts_mv TO transcripts AS
SELECT id, stream_id, pts_ms AS start_ms, ifNull(end_ms, pts_ms) AS end_ms, wall_time, text,
       score AS confidence, model
FROM events WHERE kind = 'transcript';

-- On-screen text lines; `box` is x, y, width, height as fractions of the frame.
CREATE TABLE IF NOT EXISTS ocr_text
(
    id         String,
    stream_id  LowCardinality(String),
    pts_ms     Int64 CODEC(Delta, ZSTD),
    wall_time  DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    text       String CODEC(ZSTD),
    box        Array(Float32),
    confidence Float32,
    model      LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (stream_id, pts_ms, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ocr_text_mv TO ocr_text AS
SELECT id, stream_id, pts_ms, wall_time, text, JSONExtract(detail, 'box', 'Array(Float32)') AS box,
       score AS confidence, model
FROM events WHERE kind = 'ocr';

-- Frames worth keeping (keyframes and visible changes): labels, image vector, perceptual hash.
CREATE TABLE IF NOT EXISTS frames
(
    id           String,
    stream_id    LowCardinality(String),
    pts_ms       Int64 CODEC(Delta, ZSTD),
    wall_time    DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    keyframe     UInt8,
    phash        UInt64,
    labels       Array(LowCardinality(String)),
    label_scores Array(Float32),
    features     Array(Float32) CODEC(ZSTD),
    model        LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (stream_id, pts_ms, id);

-- A keyframe of one stream nearly identical to an earlier keyframe of another.
CREATE TABLE IF NOT EXISTS duplicates
(
    id              String,
    stream_id       LowCardinality(String),
    pts_ms          Int64,
    frame_id        String,
    other_stream_id LowCardinality(String),
    other_frame_id  String,
    other_pts_ms    Int64,
    similarity      Float32,
    wall_time       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (stream_id, pts_ms, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS duplicates_mv TO duplicates AS
SELECT id, stream_id, pts_ms,
       JSONExtractString(detail, 'frame_id') AS frame_id,
       JSONExtractString(detail, 'other_stream_id') AS other_stream_id,
       JSONExtractString(detail, 'other_frame_id') AS other_frame_id,
       JSONExtractInt(detail, 'other_pts_ms') AS other_pts_ms,
       toFloat32(JSONExtractFloat(detail, 'similarity')) AS similarity,
       wall_time
FROM events WHERE kind = 'duplicate';

-- Per-stream pipeline health, snapshotted by the sink every `sink.status_interval_s`.
CREATE TABLE IF NOT EXISTS pipeline_metrics
(
    ts             DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    stream_id      LowCardinality(String),
    state          LowCardinality(String),
    decoded_fps    Float32,
    sampled_fps    Float32,
    target_fps     Float32,
    dropped_frames UInt64 CODEC(Delta, ZSTD),
    backlog_frames UInt64,
    reconnects     UInt32,
    media_ms       Int64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (stream_id, ts);

-- Work that failed `max_deliver` times, with its error and original headers.
CREATE TABLE IF NOT EXISTS dlq
(
    seq              UInt64,
    kind             LowCardinality(String),
    original_subject String,
    error            String,
    delivered        UInt32,
    headers          String,
    payload_bytes    UInt32,
    wall_time        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(wall_time)
ORDER BY (kind, seq);

-- Events per minute per stream and kind (sum `events` when reading: rows merge in the background).
CREATE TABLE IF NOT EXISTS events_per_minute
(
    minute    DateTime('UTC'),
    stream_id LowCardinality(String),
    kind      LowCardinality(String),
    events    UInt64,
    score_sum Float64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (stream_id, kind, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_mv TO events_per_minute AS
SELECT toStartOfMinute(wall_time) AS minute, stream_id, kind, count() AS events,
       sum(toFloat64(score)) AS score_sum
FROM events GROUP BY minute, stream_id, kind;
