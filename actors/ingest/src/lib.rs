//! The ingest stage's actors: the `StreamSupervisor` of a node starts one `StreamActor` per
//! registered stream; each runs a GStreamer pipeline (`sightline-streams`) and publishes sampled
//! frames, audio segments and shot windows to the bus, with backpressure and reconnects. The
//! playlist check the gateway asks for at registration is served here ([`checks`]).

pub mod checks;
pub mod lifecycle;
pub mod ownership;
pub mod placement;
mod publish;
pub mod stream_actor;
pub mod supervisor;

pub use ownership::{LeaseGuard, Presence};
pub use stream_actor::{StreamActor, StreamActorArgs, StreamMsg};
pub use supervisor::{StreamSupervisor, SupervisorArgs};
