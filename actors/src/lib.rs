//! The actor tree of a Sightline node. The stages' actors live in their own crates beside this
//! one (`ingest/`, `inference/`, `sinks/`, all on the worker runtime in `runtime/`); this crate
//! only wires the roles a node runs under one root supervisor ([`node::Node`]).

mod membership;
pub mod node;
mod supervisor;
mod wiring;

pub use node::{Node, NodeError, Roles, RolesError};
pub use sightline_bus::{
    Bus, BusError, Registry, RetryReason, StreamSpec, StreamState, StreamStatus, StreamView,
};
pub use sightline_telemetry::Metrics;
