//! The node's membership: its announcement in the nodes bucket every heartbeat (roles, host,
//! version, capacity, load, the streams it ingests), and the commands other stages send it
//! (`drain`).

use crate::node::Roles;
use futures::StreamExt;
use sightline_bus::{Bus, Cluster};
use sightline_ingest::Presence;
use sightline_settings::ClusterConfig;
use sightline_wire::{NodeCommand, NodeInfo, now_ms};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn roles_list(r: Roles) -> Vec<String> {
    [(r.gateway, "gateway"), (r.ingest, "ingest"), (r.inference, "inference"), (r.sink, "sink")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// CPU seconds this process used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces) end at its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime (USER_HZ is 100 on Linux)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()))
        .map(|pages| pages * 4096.0 / 1e6)
        .unwrap_or(0.0)
}

/// Announces this node every heartbeat until aborted.
pub(crate) fn heartbeat(
    cluster: Cluster,
    cfg: ClusterConfig,
    roles: Roles,
    presence: Arc<Presence>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started_ms = now_ms();
        let mut last = (std::time::Instant::now(), cpu_seconds());
        let mut tick = tokio::time::interval(Duration::from_millis(cfg.heartbeat_ms));
        loop {
            tick.tick().await;
            let (at, cpu) = (std::time::Instant::now(), cpu_seconds());
            let wall = at.duration_since(last.0).as_secs_f64().max(1e-3);
            let cpu_percent = ((cpu - last.1) / wall * 100.0) as f32;
            last = (at, cpu);
            let info = NodeInfo {
                id: presence.id.clone(),
                roles: roles_list(roles),
                host: host_name(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_ms,
                updated_ms: now_ms(),
                heartbeat_ms: cfg.heartbeat_ms,
                max_streams: if roles.ingest { presence.max_streams } else { 0 },
                streams: presence.owned(),
                draining: presence.draining(),
                cpu_percent,
                rss_mb: rss_mb(),
            };
            if let Err(e) = cluster.announce(&info).await {
                tracing::warn!(error = %e, "cannot announce this node");
            }
        }
    })
}

/// Answers commands on `<p>.node.<id>`: `drain` hands every stream over and takes no new ones.
pub(crate) async fn serve_commands(bus: Bus, presence: Arc<Presence>) {
    let subject = bus.names.node_subject(&presence.id);
    let mut sub = match bus.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot take node commands");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let answer = match serde_json::from_slice::<NodeCommand>(&msg.payload) {
            Ok(NodeCommand::Drain) => {
                presence.draining.store(true, Ordering::Relaxed);
                tracing::info!(node = %presence.id, "draining: handing every stream over");
                serde_json::json!({ "node": presence.id, "draining": true, "streams": presence.owned() })
            }
            Err(e) => serde_json::json!({ "error": format!("unknown command: {e}") }),
        };
        if let Some(reply) = msg.reply {
            let _ = bus.client.publish(reply, answer.to_string().into()).await;
        }
    }
}

/// Hands this node's streams over and waits (up to `timeout`) until it holds none.
pub(crate) async fn drain(presence: &Presence, timeout: Duration) -> bool {
    presence.draining.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if presence.owned().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    presence.owned().is_empty()
}
