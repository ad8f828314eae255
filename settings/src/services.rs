//! Where the services are: NATS, Redis, ClickHouse.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// NATS JetStream: the bus between every role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    /// Prefix for stream, bucket and consumer names, so several deployments can share a server.
    pub prefix: String,
    /// Replicas for streams and buckets (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// Work streams (frames, audio) keep at most this many messages per subject (one subject per
    /// stream); older ones are discarded first so a slow consumer never grows a backlog.
    pub work_max_msgs_per_subject: i64,
    /// Work messages older than this are discarded, seconds.
    pub work_max_age_s: u64,
    /// Byte bound on each work stream.
    pub work_max_bytes: i64,
    /// Events are kept this long for replay (feed resume, sink catch-up), seconds.
    pub events_max_age_s: u64,
    /// Byte bound on the events stream.
    pub events_max_bytes: i64,
    /// JetStream drops a second event with the same id within this window, seconds. It must
    /// outlast every pool's retries (see [`crate::Config::retry_horizon_s`]), so a redelivered
    /// item's events are never published twice; work streams use the same window, up to their
    /// `work_max_age_s`.
    pub events_duplicate_window_s: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "SL".into(),
            replicas: 1,
            work_max_msgs_per_subject: 120,
            work_max_age_s: 60,
            work_max_bytes: 256 << 20,
            events_max_age_s: 7 * 24 * 3600,
            events_max_bytes: 1 << 30,
            events_duplicate_window_s: 900,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface of ClickHouse (a real server or the bundled chDB adapter).
    pub url: String,
    pub database: String,
    /// The user that writes: migrations and the sinks.
    pub user: String,
    pub password: String,
    /// The user `/v1/sql` runs as: read-only by its profile on the server (`readonly = 1`, limits,
    /// `SELECT` on this database only; `config/clickhouse/reader.sql` creates it on a real server,
    /// the bundled adapter is started with it).
    pub reader_user: String,
    pub reader_password: String,
    /// Folder holding the numbered `*.sql` migrations applied at start.
    pub migrations_dir: PathBuf,
    /// Rows older than this many days are deleted by ClickHouse (TTL); 0 keeps them forever.
    pub retention_days: u32,
    /// A ClickHouse cluster (a name in the servers' `remote_servers`) to run the migrations on:
    /// every DDL `ON CLUSTER`, every table with the replicated form of its engine. "" for one
    /// server. `sightline migrations` prints the SQL.
    pub cluster: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "sightline".into(),
            user: "default".into(),
            password: String::new(),
            reader_user: "sightline_reader".into(),
            reader_password: "sightline-reader-dev".into(),
            migrations_dir: "config/migrations".into(),
            retention_days: 90,
            cluster: String::new(),
        }
    }
}
