//! Versioned schema migrations (`config/migrations/NNNN_name.sql`) and retention (TTL) settings.

use crate::StoreError;
use crate::clickhouse::EventStore;
use clickhouse::{Client, Row};
use serde::Deserialize;
use sightline_settings::ClickHouseConfig;
use std::path::Path;

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

#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
}

impl EventStore {
    /// Creates the database and applies every `NNNN_name.sql` in `dir` not applied yet, in order.
    /// Returns the versions applied now.
    pub async fn migrate(&self, cfg: &ClickHouseConfig, dir: &Path) -> Result<Vec<u32>, StoreError> {
        let bootstrap =
            Client::default().with_url(&cfg.url).with_user(&cfg.user).with_password(&cfg.password);
        let on = |stmt: &str| crate::replicated::on_cluster(stmt, &cfg.cluster);
        bootstrap
            .query(&on(&format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database)))
            .execute()
            .await
            .map_err(self.err())?;
        self.client
            .query(&on("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, \
                 applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"))
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
                self.client.query(&on(&stmt)).execute().await.map_err(|e| mig(e.to_string()))?;
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
        self.apply_retention(&cfg.database, cfg.retention_days, &cfg.cluster).await?;
        Ok(now)
    }

    /// Sets every table's TTL to `days` (0 removes it), where it differs from what is set.
    pub async fn apply_retention(&self, database: &str, days: u32, cluster: &str) -> Result<(), StoreError> {
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
                .query(&crate::replicated::on_cluster(&sql, cluster))
                .with_setting("materialize_ttl_after_modify", "0")
                .execute()
                .await
                .map_err(self.err())?;
            tracing::info!(table, days, "retention set");
        }
        Ok(())
    }
}

/// Every migration statement as [`EventStore::migrate`] runs it for `cluster` ("" = one
/// server), in order, each after a `-- NNNN_name.sql` line: what an operator reviews before
/// pointing Sightline at a cluster (`sightline migrations`).
pub fn migration_sql(dir: &Path, cluster: &str) -> Result<String, StoreError> {
    let mut files = migration_files(dir)?;
    files.sort();
    let mut out = String::new();
    for (_, name, path) in files {
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| StoreError::Migration { file: name.clone(), reason: e.to_string() })?;
        out.push_str(&format!("-- {name}\n"));
        for stmt in split_statements(&sql) {
            out.push_str(&crate::replicated::on_cluster(&stmt, cluster));
            out.push_str(";\n\n");
        }
    }
    Ok(out)
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
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
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
