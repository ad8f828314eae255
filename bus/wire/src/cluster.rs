//! Several Sightline nodes on one bus: what each node announces in the membership bucket, and
//! the stream leases in the leases bucket by which exactly one ingest node runs each stream.

use serde::{Deserialize, Serialize};

/// A node's announcement, renewed every heartbeat (`<p>_nodes`, key = node id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// `gateway`, `ingest`, `inference`, `sink`.
    pub roles: Vec<String>,
    pub host: String,
    pub version: String,
    pub started_ms: i64,
    /// Wall clock of the latest heartbeat, Unix ms.
    pub updated_ms: i64,
    pub heartbeat_ms: u64,
    /// The most streams this node ingests at once (0 for a node without the ingest role).
    pub max_streams: u32,
    /// The streams this node ingests now.
    pub streams: Vec<String>,
    /// Handing its streams over (it takes no new ones).
    pub draining: bool,
    /// Process CPU over the last heartbeat, % of one core.
    pub cpu_percent: f32,
    /// Resident memory, MB.
    pub rss_mb: f64,
}

impl NodeInfo {
    /// Whether the node heartbeat recently enough to count (three heartbeats of grace).
    pub fn alive(&self, now_ms: i64) -> bool {
        now_ms - self.updated_ms <= 3 * self.heartbeat_ms as i64
    }

    pub fn ingests(&self) -> bool {
        self.roles.iter().any(|r| r == "ingest")
    }
}

/// A stream's lease (`<p>_leases`, key = stream id): who ingests it, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    /// The fencing token: the bucket revision at which `owner` took the lease (0 in the very
    /// write that takes it, whose own revision is the token). It travels with every work message
    /// the owner publishes; downstream refuses a token older than the stream's current one for
    /// work published after the current lease was taken.
    #[serde(default)]
    pub token: u64,
    /// When the owner took it, Unix ms.
    pub acquired_ms: i64,
    /// When it lapses unless renewed, Unix ms (the owner's clock at renewal plus the TTL).
    pub expires_ms: i64,
}

impl Lease {
    /// The token of the entry at `revision` holding this lease.
    pub fn token_at(&self, revision: u64) -> u64 {
        if self.token == 0 { revision } else { self.token }
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms > self.expires_ms
    }
}

/// What a node is asked to do over `<p>.node.<id>.<verb>` (request/reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeCommand {
    /// Hand every stream over to other ingest nodes and take no new ones.
    Drain,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_taking_write_is_its_own_token_and_renewals_carry_it() {
        let taking = Lease { owner: "a".into(), token: 0, acquired_ms: 10, expires_ms: 5010 };
        assert_eq!(taking.token_at(41), 41);
        let renewed = Lease { token: 41, expires_ms: 6010, ..taking };
        assert_eq!(renewed.token_at(43), 41);
        assert!(!renewed.expired(6010) && renewed.expired(6011));
    }

    #[test]
    fn a_node_is_alive_for_three_heartbeats() {
        let n = NodeInfo {
            id: "n".into(),
            roles: vec!["ingest".into()],
            host: "h".into(),
            version: "0".into(),
            started_ms: 0,
            updated_ms: 1000,
            heartbeat_ms: 500,
            max_streams: 4,
            streams: vec![],
            draining: false,
            cpu_percent: 0.0,
            rss_mb: 0.0,
        };
        assert!(n.alive(2500) && !n.alive(2501) && n.ingests());
    }
}
