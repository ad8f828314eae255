//! Sightline's actor tree (ractor): a `StreamSupervisor` per ingest node that owns one
//! `StreamActor` per registered stream, shared inference actors on JetStream pull consumers, and
//! the sinks that move events into the stores. Everything is started from [`node::Node`].

pub mod bus;
pub mod event_batch;
pub mod inference;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod sink;
pub mod stream_actor;
pub mod supervisor;
pub mod vector_sink;

pub use bus::{Bus, BusError};
pub use metrics::Metrics;
pub use node::{Node, Roles};
pub use registry::{Registry, RetryReason, StreamSpec, StreamState, StreamStatus, StreamView};
