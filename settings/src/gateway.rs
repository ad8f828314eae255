//! The gateway: listen address, limits, API keys.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: String,
    /// Folder with the web dashboard's files, served at `/`.
    pub dashboard_dir: PathBuf,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Events buffered for one websocket client before it is closed as too slow.
    pub feed_buffer: usize,
    /// Seconds between websocket heartbeats.
    pub feed_heartbeat_s: u64,
    /// Seconds a send to a feed client (or its answer to a ping) may take before the client is
    /// closed as stalled.
    pub feed_send_timeout_s: u64,
    /// Feeds (websocket and server-sent events) open at once: in all, and per key (per client
    /// address while the API is open).
    pub max_feeds: usize,
    pub max_feeds_per_key: usize,
    /// Origins of pages, besides the gateway's own, that may open feeds (`https://ops.example`).
    pub allowed_origins: Vec<String>,
    /// `POST /v1/sql`: rows returned at most, and seconds a query may run. The server enforces
    /// them, in the read-only user's profile: `make services` starts the bundled adapter with
    /// these values, and `config/clickhouse/reader.sql` sets them on a real server.
    pub sql_max_rows: u64,
    pub sql_max_seconds: u64,
    /// Largest answer the gateway passes on, bytes (read as it streams in; more is a 413).
    pub sql_max_bytes: usize,
    /// SQL queries running at once, in all and per key (per client address while the API is
    /// open); one more answers 429.
    pub sql_max_concurrent: usize,
    pub sql_max_concurrent_per_key: usize,
    /// Largest `k` accepted by search and similar-frame lookups.
    pub search_max_k: usize,
    /// API keys; none configured leaves the API open (the gateway warns at start).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Requests per second per key (per client address while the API is open); 0 turns limits off.
    pub rate_limit_per_s: f64,
    /// Requests a key may make in a burst above that rate.
    pub rate_limit_burst: u32,
}

/// One API key, stored as the SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    /// Lower-case hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// "read" (queries, search, feeds) or "admin" (also creating, deleting, pausing streams).
    pub scope: Scope,
}

/// What an API key may do (ordered: admin includes read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries, search, feeds.
    Read,
    /// Also creating, deleting, pausing and resuming streams.
    Admin,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            dashboard_dir: "dashboards/web".into(),
            max_body_bytes: 64 * 1024,
            feed_buffer: 1024,
            feed_heartbeat_s: 15,
            feed_send_timeout_s: 10,
            max_feeds: 256,
            max_feeds_per_key: 32,
            allowed_origins: Vec::new(),
            sql_max_rows: 10_000,
            sql_max_seconds: 10,
            sql_max_bytes: 32 << 20,
            sql_max_concurrent: 8,
            sql_max_concurrent_per_key: 2,
            search_max_k: 100,
            api_keys: Vec::new(),
            rate_limit_per_s: 50.0,
            rate_limit_burst: 100,
        }
    }
}
