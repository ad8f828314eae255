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
        }
    }
}

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
        Ok(now)
    }

    /// Inserts a batch in one INSERT. Redelivered events keep their id and sort key, so the
    /// ReplacingMergeTree keeps one copy.
    pub async fn insert_events(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<EventRow>("events").await.map_err(self.err())?;
        for e in events {
            insert.write(&EventRow::from(e)).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
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
