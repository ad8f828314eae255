//! The worker runtime. Every inference pool and every sink is a [`worker::Batches`]
//! implementation run by [`worker::WorkerActor`]: one `select!` loop over fetch, tick and
//! shutdown, supervised as a ractor actor. What happens to each message is decided by pure
//! functions ([`decision`], [`fallback`], [`backoff`]) that are unit-tested without NATS or ONNX.

pub mod backoff;
pub mod decision;
pub mod fallback;
pub mod worker;

pub use backoff::Backoff;
pub use decision::{Action, Outcome, RetryPolicy, decide};
pub use fallback::{FallbackPolicy, FallbackReason, Route};
pub use worker::{Batches, WorkerActor, WorkerArgs, WorkerError};
