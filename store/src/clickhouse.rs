//! The ClickHouse event store: migrations applied at start, batched idempotent inserts.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use sightline_settings::ClickHouseConfig;
use sightline_wire::{Event, EventKind};
use std::path::Path;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse at {url}: {source}")]
    ClickHouse { url: String, source: clickhouse::error::Error },
    #[error("migration {file}: {reason}")]
    Migration { file: String, reason: String },
    #[error("Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
}

/// One row of `events`; mirrors [`sightline_wire::Event`].
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub kind: String,
    pub stream_id: String,
    pub pts_ms: i64,
    pub end_ms: Option<i64>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub wall_time: OffsetDateTime,
    pub text: String,
    pub score: f32,
    pub model: String,
    /// Kind-specific details as JSON ([`Event::detail_json`]).
    pub detail: String,
}

impl From<&Event> for EventRow {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            kind: e.kind.as_str().to_string(),
            stream_id: e.stream_id.clone(),
            pts_ms: e.pts_ms,
            end_ms: e.end_ms,
            wall_time: OffsetDateTime::from_unix_timestamp_nanos(e.wall_ms as i128 * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            text: e.text.clone(),
            score: e.score,
            model: e.model.clone(),
            detail: e.detail_json(),
        }
    }
}

fn wall_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// One row of `frames`: a kept frame with its labels and image vector.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FrameRow {
    pub id: String,
    pub stream_id: String,
    pub pts_ms: i64,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub wall_time: OffsetDateTime,
    pub keyframe: u8,
    pub phash: u64,
    pub labels: Vec<String>,
    pub label_scores: Vec<f32>,
    pub features: Vec<f32>,
    pub image_features: Vec<f32>,
    pub model: String,
}

impl FrameRow {
    pub fn from_event(e: &Event) -> Option<Self> {
        let f = e.frame.as_ref()?;
        Some(Self {
            id: e.id.clone(),
            stream_id: e.stream_id.clone(),
            pts_ms: e.pts_ms,
            wall_time: wall_time(e.wall_ms),
            keyframe: f.keyframe as u8,
            phash: u64::from_str_radix(&f.phash, 16).unwrap_or(0),
            labels: f.labels.iter().map(|l| l.name.clone()).collect(),
            label_scores: f.labels.iter().map(|l| l.score).collect(),
            features: f.vector.clone(),
            image_features: f.features.clone(),
            model: e.model.clone(),
        })
    }
}

/// One row of `dlq`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DlqRow {
    pub seq: u64,
    pub kind: String,
    pub original_subject: String,
    pub error: String,
    pub delivered: u32,
    pub headers: String,
    pub payload_bytes: u32,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub wall_time: OffsetDateTime,
}

/// One row of `streams`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StreamRow {
    pub id: String,
    pub name: String,
    pub url: String,
    pub state: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub updated_at: OffsetDateTime,
    pub deleted: u8,
}

/// One row of `pipeline_metrics`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PipelineRow {
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub ts: OffsetDateTime,
    pub stream_id: String,
    pub state: String,
    pub decoded_fps: f32,
    pub sampled_fps: f32,
    pub target_fps: f32,
    pub dropped_frames: u64,
    pub backlog_frames: u64,
    pub reconnects: u32,
    pub media_ms: i64,
}

/// Output formats of [`EventStore::query_readonly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFormat {
    Json,
    Csv,
}

/// Tables and the time column their TTL is measured on.
const RETENTION: [(&str, &str); 9] = [
    ("events", "wall_time"),
    ("scenes", "wall_time"),
    ("transcripts", "wall_time"),
    ("ocr_text", "wall_time"),
    ("frames", "wall_time"),
    ("duplicates", "wall_time"),
    ("pipeline_metrics", "ts"),
    ("dlq", "wall_time"),
    ("events_per_minute", "minute"),
];

impl EventRow {
    pub fn to_event(&self) -> Option<Event> {
        Some(Event {
            id: self.id.clone(),
            kind: EventKind::parse(&self.kind)?,
            stream_id: self.stream_id.clone(),
            pts_ms: self.pts_ms,
            end_ms: self.end_ms,
            wall_ms: (self.wall_time.unix_timestamp_nanos() / 1_000_000) as i64,
            text: self.text.clone(),
            score: self.score,
            model: self.model.clone(),
            frame: None,
            duplicate: None,
            scene: None,
            ocr: None,
        })
        .map(|mut e| {
            e.set_detail_json(&self.detail);
            e
        })
    }
}

#[derive(Clone)]
pub struct EventStore {
    client: Client,
    url: String,
}

#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
}

impl EventStore {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let client = Client::default()
            .with_url(&cfg.url)
            .with_user(&cfg.user)
            .with_password(&cfg.password)
            .with_database(&cfg.database);
        Self { client, url: cfg.url.clone() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn err(&self) -> impl Fn(clickhouse::error::Error) -> StoreError + '_ {
        |source| StoreError::ClickHouse { url: self.url.clone(), source }
    }

    /// The server's version, which also proves it answers.
    pub async fn version(&self) -> Result<String, StoreError> {
        self.client.query("SELECT version()").fetch_one::<String>().await.map_err(self.err())
    }

    /// Creates the database and applies every `NNNN_name.sql` in `dir` not applied yet, in order.
    /// Returns the versions applied now.
    pub async fn migrate(&self, cfg: &ClickHouseConfig, dir: &Path) -> Result<Vec<u32>, StoreError> {
        let bootstrap =
            Client::default().with_url(&cfg.url).with_user(&cfg.user).with_password(&cfg.password);
        bootstrap
            .query(&format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database))
            .execute()
            .await
            .map_err(self.err())?;
        self.client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, \
                 applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version",
            )
            .execute()
            .await
            .map_err(self.err())?;
        let applied: Vec<u32> = self
            .client
            .query("SELECT version FROM schema_migrations")
            .fetch_all::<Applied>()
            .await
            .map_err(self.err())?
            .into_iter()
            .map(|a| a.version)
            .collect();
        let mut files = migration_files(dir)?;
        files.sort();
        let mut now = Vec::new();
        for (version, name, path) in files {
            if applied.contains(&version) {
                continue;
            }
            let mig = |reason: String| StoreError::Migration { file: name.clone(), reason };
            let sql = std::fs::read_to_string(&path).map_err(|e| mig(e.to_string()))?;
            for stmt in split_statements(&sql) {
                self.client.query(&stmt).execute().await.map_err(|e| mig(e.to_string()))?;
            }
            self.client
                .query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
                .bind(version)
                .bind(&name)
                .execute()
                .await
                .map_err(|e| mig(e.to_string()))?;
            tracing::info!(version, %name, "applied ClickHouse migration");
            now.push(version);
        }
        self.apply_retention(&cfg.database, cfg.retention_days).await?;
        Ok(now)
    }

    /// Inserts a batch: one INSERT into `events` (materialized views fan it out into the typed
    /// tables) and one into `frames` when the batch has frames. Redelivered events keep their id
    /// and sort key, so the ReplacingMergeTrees keep one copy; the sink also leaves out events it
    /// finds already stored ([`EventStore::stored_ids`]).
    pub async fn insert_events(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let frames: Vec<FrameRow> = events.iter().filter_map(FrameRow::from_event).collect();
        // Frames first: if this fails nothing of the batch is in `events`, which the sink's
        // redelivery check reads.
        let token = batch_token(events);
        if !frames.is_empty() {
            self.insert_rows_once("frames", &frames, &token).await?;
        }
        let rows: Vec<EventRow> = events.iter().map(EventRow::from).collect();
        self.insert_rows_once("events", &rows, &token).await
    }

    /// One INSERT with an insert deduplication token: ClickHouse drops a retry of the same batch
    /// (and what its materialized views would write).
    async fn insert_rows_once<R: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[R],
        token: &str,
    ) -> Result<(), StoreError> {
        let mut insert = self
            .client
            .insert::<R>(table)
            .await
            .map_err(self.err())?
            .with_setting("insert_deduplication_token", format!("{table}-{token}"))
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
        for r in rows {
            insert.write(r).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// One INSERT of `rows` into `table`.
    pub async fn insert_rows<R: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[R],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<R>(table).await.map_err(self.err())?;
        for r in rows {
            insert.write(r).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// Which of `ids` are already in `events`.
    pub async fn stored_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let found: Vec<String> = self
            .client
            .query("SELECT DISTINCT id FROM events WHERE id IN ?")
            .bind(ids)
            .fetch_all::<String>()
            .await
            .map_err(self.err())?;
        Ok(found.into_iter().collect())
    }

    /// Sets every table's TTL to `days` (0 removes it), where it differs from what is set.
    pub async fn apply_retention(&self, database: &str, days: u32) -> Result<(), StoreError> {
        for (table, column) in RETENTION {
            let engine: String = self
                .client
                .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
                .bind(database)
                .bind(table)
                .fetch_optional::<String>()
                .await
                .map_err(self.err())?
                .unwrap_or_default();
            let has_ttl = engine.contains(" TTL ");
            let sql = if days == 0 {
                if !has_ttl {
                    continue;
                }
                format!("ALTER TABLE {table} REMOVE TTL")
            } else {
                if engine.contains(&format!("toIntervalDay({days})")) {
                    continue;
                }
                format!("ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {days} DAY")
            };
            self.client
                .query(&sql)
                .with_setting("materialize_ttl_after_modify", "0")
                .execute()
                .await
                .map_err(self.err())?;
            tracing::info!(table, days, "retention set");
        }
        Ok(())
    }

    /// Runs a user's read-only query (ClickHouse's `readonly` setting, a time limit and a row
    /// limit) and returns the result in `format`.
    pub async fn query_readonly(
        &self,
        sql: &str,
        format: SqlFormat,
        max_rows: u64,
        max_seconds: u64,
    ) -> Result<bytes::Bytes, StoreError> {
        // `?` is the crate's bind placeholder; `??` is a literal question mark.
        let escaped = sql.replace('?', "??");
        let fmt = match format {
            SqlFormat::Json => "JSON",
            SqlFormat::Csv => "CSVWithNames",
        };
        self.client
            .query(&escaped)
            .with_setting("readonly", "1")
            .with_setting("max_execution_time", max_seconds.to_string())
            .with_setting("max_result_rows", max_rows.to_string())
            .with_setting("result_overflow_mode", "break")
            // Counts as JSON numbers, not strings.
            .with_setting("output_format_json_quote_64bit_integers", "0")
            .fetch_bytes(fmt)
            .map_err(self.err())?
            .collect()
            .await
            .map_err(self.err())
    }

    /// Recent dead letters, newest first.
    pub async fn dlq(&self, kind: Option<&str>, limit: u64) -> Result<Vec<DlqRow>, StoreError> {
        let mut q = match kind {
            Some(k) => self
                .client
                .query("SELECT ?fields FROM dlq FINAL WHERE kind = ? ORDER BY wall_time DESC LIMIT ?")
                .bind(k),
            None => self.client.query("SELECT ?fields FROM dlq FINAL ORDER BY wall_time DESC LIMIT ?"),
        };
        q = q.bind(limit);
        q.fetch_all::<DlqRow>().await.map_err(self.err())
    }

    /// Kept frames by event id.
    pub async fn frames_by_id(&self, ids: &[String]) -> Result<Vec<FrameRow>, StoreError> {
        self.client
            .query("SELECT ?fields FROM frames FINAL WHERE id IN ?")
            .bind(ids)
            .fetch_all::<FrameRow>()
            .await
            .map_err(self.err())
    }

    /// The last kept frame of a stream at or before `pts_ms`, for linking a moment to a picture.
    pub async fn frame_at(&self, stream_id: &str, pts_ms: i64) -> Result<Option<String>, StoreError> {
        self.client
            .query("SELECT id FROM frames WHERE stream_id = ? AND pts_ms <= ? ORDER BY pts_ms DESC LIMIT 1")
            .bind(stream_id)
            .bind(pts_ms)
            .fetch_optional::<String>()
            .await
            .map_err(self.err())
    }

    /// Events of one stream, deduplicated, in media-time order.
    pub async fn stream_events(&self, stream_id: &str) -> Result<Vec<EventRow>, StoreError> {
        self.events_of(stream_id, None, u64::MAX).await
    }

    /// Events of one stream, optionally of one kind, first `limit` in media-time order.
    pub async fn events_of(
        &self,
        stream_id: &str,
        kind: Option<EventKind>,
        limit: u64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let sql = match kind {
            Some(_) => {
                "SELECT ?fields FROM events FINAL WHERE stream_id = ? AND kind = ? ORDER BY pts_ms, kind LIMIT ?"
            }
            None => "SELECT ?fields FROM events FINAL WHERE stream_id = ? ORDER BY pts_ms, kind LIMIT ?",
        };
        let mut q = self.client.query(sql).bind(stream_id);
        if let Some(k) = kind {
            q = q.bind(k.as_str());
        }
        q.bind(limit).fetch_all::<EventRow>().await.map_err(self.err())
    }
}

/// A batch's identity: a hash of its event ids in order.
fn batch_token(events: &[Event]) -> String {
    let h = sightline_wire::stable_hash(events.iter().flat_map(|e| [e.id.as_bytes(), &[0u8][..]]));
    format!("{h:016x}-{}", events.len())
}

fn migration_files(dir: &Path) -> Result<Vec<(u32, String, std::path::PathBuf)>, StoreError> {
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::Migration {
        file: dir.display().to_string(),
        reason: format!("cannot read migrations folder: {e}"),
    })?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".sql") else { continue };
        let version = stem.split('_').next().and_then(|v| v.parse::<u32>().ok()).ok_or_else(|| {
            StoreError::Migration {
                file: name.clone(),
                reason: "name must start with a number, e.g. 0002_x.sql".into(),
            }
        })?;
        out.push((version, name, entry.path()));
    }
    Ok(out)
}

/// Splits a migration into statements on `;` at line ends, dropping `--` comment lines.
fn split_statements(sql: &str) -> Vec<String> {
    let body: String =
        sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    body.split(";\n")
        .chain(std::iter::empty())
        .map(|s| s.trim().trim_end_matches(';').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_and_comments_drop() {
        let sql = "-- c\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE VIEW b AS SELECT ';' AS s;\n";
        let s = split_statements(sql);
        assert_eq!(s.len(), 2);
        assert!(s[0].starts_with("CREATE TABLE a"));
        assert_eq!(s[1], "CREATE VIEW b AS SELECT ';' AS s");
    }

    #[test]
    fn shipped_migrations_are_numbered() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/migrations");
        let files = migration_files(&dir).unwrap();
        assert!(files.iter().any(|f| f.0 == 1));
    }
}
