//! A Sightline node: connects to the bus, creates the wire contract, and starts the actors of the
//! roles it runs under one root supervisor that restarts any failed child with backoff.

use crate::supervisor::{RootMsg, RootSupervisor};
use crate::wiring::Wiring;
use ractor::{Actor, ActorRef};
use sightline_bus::{Bus, BusError, Registry};
use sightline_settings::Config;
use sightline_store::{EventStore, StoreError};
use sightline_telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start actors: {0}")]
    Spawn(String),
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RolesError {
    #[error("unknown role `{0}`; roles are gateway, ingest, inference, sink")]
    Unknown(String),
    #[error("no roles given; roles are gateway, ingest, inference, sink")]
    Empty,
}

/// Which parts of Sightline this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub gateway: bool,
    pub ingest: bool,
    pub inference: bool,
    pub sink: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { gateway: true, ingest: true, inference: true, sink: true };

    pub fn parse(list: &str) -> Result<Self, RolesError> {
        let mut r = Roles { gateway: false, ingest: false, inference: false, sink: false };
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part {
                "gateway" => r.gateway = true,
                "ingest" => r.ingest = true,
                "inference" => r.inference = true,
                "sink" => r.sink = true,
                "all" => r = Roles::ALL,
                other => return Err(RolesError::Unknown(other.to_string())),
            }
        }
        if r == (Roles { gateway: false, ingest: false, inference: false, sink: false }) {
            return Err(RolesError::Empty);
        }
        Ok(r)
    }
}

pub struct Node {
    pub bus: Bus,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub store: EventStore,
    root: ActorRef<RootMsg>,
    root_done: tokio::task::JoinHandle<()>,
    /// Request/reply services this node answers (query embedding, playlist checks).
    services: Vec<tokio::task::JoinHandle<()>>,
    /// This node's id, draining flag and the streams it ingests.
    pub presence: Arc<sightline_ingest::Presence>,
    cluster: sightline_bus::Cluster,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Node {
    pub async fn start(cfg: &Config, roles: Roles, metrics: Arc<Metrics>) -> Result<Node, NodeError> {
        let bus = Bus::connect(&cfg.nats).await?;
        bus.ensure().await?;
        let registry = Registry::open(&bus).await?;
        let store = EventStore::new(&cfg.clickhouse);
        if roles.sink || roles.gateway {
            store.migrate(&cfg.clickhouse, &cfg.clickhouse.migrations_dir).await?;
        }
        let presence =
            sightline_ingest::Presence::new(cfg.cluster.resolved_node_id(), cfg.cluster.max_streams);
        let cluster = sightline_bus::Cluster::open(&bus).await?;
        let wiring = Wiring {
            cfg,
            bus: &bus,
            registry: &registry,
            store: &store,
            metrics: &metrics,
            presence: &presence,
        };
        let mut children = Vec::new();
        if roles.ingest {
            children.extend(wiring.ingest());
        }
        if roles.inference {
            children.extend(wiring.inference());
        }
        if roles.sink {
            children.extend(wiring.sinks());
        }
        let mut services = Vec::new();
        if roles.inference {
            services.push(tokio::spawn(sightline_inference::query::serve_queries(bus.clone(), cfg.clone())));
        }
        if roles.ingest {
            services
                .push(tokio::spawn(sightline_ingest::checks::serve_checks(bus.clone(), cfg.ingest.clone())));
        }
        services.push(tokio::spawn(crate::membership::serve_commands(bus.clone(), presence.clone())));
        let heartbeat =
            crate::membership::heartbeat(cluster.clone(), cfg.cluster.clone(), roles, presence.clone());
        tracing::info!(node = %presence.id, ?roles, "node started");
        let (root, root_done) = Actor::spawn(
            Some(format!("sightline-root-{}", uuid::Uuid::new_v4().simple())),
            RootSupervisor,
            children,
        )
        .await
        .map_err(|e| NodeError::Spawn(e.to_string()))?;
        Ok(Node { bus, registry, metrics, store, root, root_done, services, presence, cluster, heartbeat })
    }

    /// Kills the named actor (`scenes-0`, `speech-0`, `ocr-0`, `sink-clickhouse`, …) as a crash
    /// would: its in-flight work is abandoned unacked, JetStream redelivers it, and the supervisor
    /// restarts the actor with backoff. For failure drills and tests.
    pub fn kill_actor(&self, name: &str) {
        let _ = self.root.cast(RootMsg::Kill(name.to_string()));
    }

    /// Hands this node's streams over to the other ingest nodes (their leases released as each
    /// stream stops) and waits until it holds none, up to [`sightline_ingest::ownership::DRAIN_TIMEOUT`].
    /// True when every stream was handed over.
    pub async fn drain(&self) -> bool {
        crate::membership::drain(&self.presence, sightline_ingest::ownership::DRAIN_TIMEOUT).await
    }

    /// Stops every actor (pipelines torn down, in-flight batches finished or left unacked for
    /// redelivery; stream leases released) and waits for them, then leaves the membership.
    pub async fn shutdown(self) {
        for s in &self.services {
            s.abort();
        }
        self.root.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(15), self.root_done).await;
        self.heartbeat.abort();
        let _ = self.cluster.leave(&self.presence.id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_with_clear_errors() {
        let r = Roles::parse(" ingest, sink ").unwrap();
        assert_eq!(r, Roles { gateway: false, ingest: true, inference: false, sink: true });
        assert_eq!(Roles::parse("all"), Ok(Roles::ALL));
        assert_eq!(Roles::parse("gateway,gpu"), Err(RolesError::Unknown("gpu".into())));
        assert_eq!(Roles::parse(" , "), Err(RolesError::Empty));
    }
}
