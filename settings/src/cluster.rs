//! Several nodes on one bus: who this node is, how it announces itself, and the leases by which
//! exactly one ingest node runs each stream.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id in the membership bucket and on stream leases ("" = host name, process id
    /// and a random suffix, new at every start). Letters, digits, `-` and `_`, at most 64.
    pub node_id: String,
    /// How often a node announces itself and renews its stream leases, ms.
    pub heartbeat_ms: u64,
    /// A stream lease not renewed for this long is free for another ingest node, ms; a node that
    /// is dead or partitioned from NATS loses its streams after it (plus the new owner's start).
    /// The owner stops publishing a stream it could not renew `lease_margin_ms` before this, so
    /// two nodes never publish one stream's media at once.
    pub lease_ttl_ms: u64,
    /// Safety margin of that self-fencing, ms (covers clock drift and a slow renewal).
    pub lease_margin_ms: u64,
    /// The most streams this ingest node runs at once (its capacity); assignment balances by it.
    pub max_streams: u32,
    /// A node holding more than its fair share hands one stream to an emptier node at most this
    /// often, s (a joining node takes its share over time without stopping streams needlessly).
    pub rebalance_interval_s: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            heartbeat_ms: 1000,
            lease_ttl_ms: 5000,
            lease_margin_ms: 1000,
            max_streams: 32,
            rebalance_interval_s: 5,
        }
    }
}

impl ClusterConfig {
    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        let invalid = |m: String| Err(crate::ConfigError::Invalid(m));
        let id = &self.node_id;
        if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return invalid(format!("cluster.node_id `{id}` must be at most 64 letters, digits, `-` or `_`"));
        }
        if self.heartbeat_ms < 100 {
            return invalid("cluster.heartbeat_ms must be at least 100".into());
        }
        if self.lease_ttl_ms < 3 * self.heartbeat_ms {
            return invalid(format!(
                "cluster.lease_ttl_ms ({}) must be at least three heartbeats ({} ms), or a lease lapses between renewals",
                self.lease_ttl_ms,
                3 * self.heartbeat_ms
            ));
        }
        if self.lease_margin_ms < self.heartbeat_ms / 2
            || self.lease_margin_ms >= self.lease_ttl_ms - self.heartbeat_ms
        {
            return invalid(
                "cluster.lease_margin_ms must be between half a heartbeat and lease_ttl_ms − heartbeat_ms"
                    .into(),
            );
        }
        if self.max_streams == 0 {
            return invalid("cluster.max_streams must be at least 1".into());
        }
        Ok(())
    }

    /// This node's id: the configured one, or `<host>-<pid>-<random>`.
    pub fn resolved_node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
            .take(32)
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let host = if host.is_empty() { "node".to_string() } else { host };
        format!("{host}-{}-{:04x}", std::process::id(), nanos & 0xffff)
    }
}
