//! The bus stage: one connection to NATS JetStream and the wire contract's streams and buckets
//! ([`Bus`]), the stream registry in KV ([`Registry`]), durable work consumers with the ack
//! vocabulary every worker uses ([`work`]), and request/reply between stages ([`rpc`]).

pub mod cluster;
pub mod connection;
pub mod registry;
pub mod retention;
pub mod rpc;
pub mod work;

pub use cluster::{Cluster, Fence, Held, KvMirror, Renewal};
pub use connection::{Bus, BusError};
pub use registry::{
    Change, Registry, RetryReason, StreamSpec, StreamState, StreamStatus, StreamView, new_incarnation,
};
pub use work::{WorkSpec, fetch_batch, publish_events, work_consumer};
