-- When each event reached ClickHouse: `inserted_at - wall_time` is the end-to-end latency from
-- the media being played to the event being queryable (the dashboards chart it).
ALTER TABLE events ADD COLUMN IF NOT EXISTS inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD);
